// Appends one event through the installed mnemo package and reads it back.
#include <iostream>

#include "mnemo/persistence/journal.hpp"

int main(int argc, char** argv) {
  using namespace mnemo::persistence;
  if (argc != 2) return 2;
  journal_config cfg;
  cfg.directory = argv[1];
  auto j = journal::open(cfg);
  if (!j) {
    std::cerr << j.error().to_string() << "\n";
    return 1;
  }
  new_event ev;
  ev.type = "consumer.checked";
  ev.payload = {0x80};  // an empty msgpack map
  auto res = (*j)->append("consumer", {ev}, expected_version::no_stream());
  auto back = (*j)->read_stream("consumer", 1, 1, 1);
  if (!res || !back || back->size() != 1) {
    std::cerr << "round trip failed\n";
    return 1;
  }
  std::cout << "consumer: appended and read back "
            << back->front().id.to_string() << "\n";
  return 0;
}
