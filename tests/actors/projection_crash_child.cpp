// Child program of the projection_crash suite: a node with an exactly-once
// projection ("eo": per-stream counters in table "eo") and an at-least-once
// projection ("alo": appends positions to DIR/alo.log, fsynced before the
// offset is stored), plus a writer appending until the parent kills it.
//
//   projection_crash_child DIR run     append and project until killed
//   projection_crash_child DIR drain   project until both reach the head

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;

namespace {

// Counts events per stream in table `name`, under offset `name`.
actors::projection_spec exactly_once(std::string name) {
  actors::projection_spec spec;
  spec.name = name;
  spec.apply = [name](persistence::write_txn& txn,
                      const persistence::event_envelope& env) {
    auto cur = persistence::table_store::get_in(txn, name, env.stream_id);
    if (!cur) return cur.error();
    auto n = *cur ? std::stoull(**cur) + 1 : 1;
    return persistence::table_store::put_in(txn, name, env.stream_id,
                                            std::to_string(n));
  };
  return spec;
}

actors::projection_spec at_least_once(const std::string& log) {
  actors::projection_spec spec;
  spec.name = "alo";
  spec.options.group_size = 8;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  spec.effect = [fd](const std::vector<persistence::event_envelope>& group) {
    std::string lines;
    for (auto& env : group) lines += std::to_string(env.position) + "\n";
    if (::write(fd, lines.data(), lines.size()) !=
            static_cast<ssize_t>(lines.size()) ||
        ::fsync(fd) != 0)
      return persistence::error{persistence::errc::storage_error,
                                "alo.log write failed"};
    return persistence::error{};
  };
  return spec;
}

uint64_t offset(runtime::node& n, const caf::actor& p) {
  caf::scoped_actor self{n.system()};
  uint64_t result = 0;
  self->request(p, std::chrono::seconds{30}, actors::status_atom::value)
      .receive([&](actors::projection_status& st) { result = st.offset; },
               [&](caf::error&) {});
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  std::string dir = argv[1];
  std::string mode = argv[2];
  runtime::node_config cfg;
  cfg.data_dir = dir + "/data";
  auto n = runtime::node::start(cfg);
  if (!n) {
    std::cerr << runtime::describe(n.error()) << "\n";
    return 1;
  }
  auto& node = **n;
  actors::projection_context ctx{&node.journal(), &node.completions(),
                                 node.event_bus()};
  // The default (live events in commit), and small batches written
  // through the pipeline only.
  auto eo = actors::spawn_projection(node.system(), ctx, exactly_once("eo"));
  auto pipelined_spec = exactly_once("eo_pipelined");
  pipelined_spec.options.in_commit = false;
  pipelined_spec.options.batch_size = 16;
  auto pipelined =
      actors::spawn_projection(node.system(), ctx, std::move(pipelined_spec));
  auto alo = actors::spawn_projection(node.system(), ctx,
                                      at_least_once(dir + "/alo.log"));
  if (!eo || !pipelined || !alo) return 1;
  node.track(*eo);
  node.track(*pipelined);
  node.track(*alo);
  if (mode == "drain") {
    auto head = node.journal().head_position();
    while (offset(node, *eo) < head || offset(node, *pipelined) < head ||
           offset(node, *alo) < head)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    std::cout << "drained " << head << std::endl;
    return 0;
  }
  for (uint64_t i = 0;; ++i) {
    std::vector<persistence::new_event> batch(1 + i % 7);
    for (auto& ev : batch) {
      ev.type = "crash.tick";
      ev.payload = {0x80};
    }
    auto res =
        node.journal().append("s-" + std::to_string(i % 10), std::move(batch),
                              persistence::expected_version::any());
    if (!res) return 1;
  }
}
