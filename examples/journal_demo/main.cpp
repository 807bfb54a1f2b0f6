// mnemo-journal-demo: appends a few bank-account events to a journal in a
// data directory, reads them back and prints them as JSON lines. Run it
// twice on the same directory: the second run continues the streams.
//
//   mnemo-journal-demo [DATA_DIR]    (default ./data)

#include <cstdio>
#include <iostream>
#include <string>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"

using namespace mnemo::persistence;

namespace {

struct account_opened {
  std::string owner;
  MSGPACK_DEFINE_MAP(owner)
};

struct money_deposited {
  int64_t amount = 0;
  MSGPACK_DEFINE_MAP(amount)
};

int fail(const std::string& what, const error& err) {
  std::cerr << "mnemo-journal-demo: " << what << ": " << err.to_string()
            << "\n";
  return 1;
}

nlohmann::json to_json(const event_registry& types, const event_envelope& env) {
  auto payload = types.payload_json(env);
  return {{"stream", env.stream_id},
          {"sequence", env.sequence},
          {"position", env.position},
          {"type", env.type},
          {"id", env.id.to_string()},
          {"payload", payload ? *payload : nlohmann::json(nullptr)}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && std::string{argv[1]} == "--help")) {
    std::cout << "usage: mnemo-journal-demo [DATA_DIR]\n"
                 "Appends bank-account events to the journal in DATA_DIR "
                 "(default ./data) and prints the journal as JSON lines.\n";
    return argc == 2 ? 0 : 2;
  }
  event_registry types;
  if (auto err = types.add<account_opened>("account.opened"))
    return fail("register", err);
  if (auto err = types.add<money_deposited>("account.deposited"))
    return fail("register", err);
  journal_config cfg;
  cfg.directory = argc == 2 ? argv[1] : "data";
  auto opened = journal::open(cfg);
  if (!opened) return fail("open " + cfg.directory, opened.error());
  auto& j = **opened;
  auto version = j.highest_sequence("account-1");
  if (!version) return fail("read", version.error());
  std::vector<new_event> batch;
  if (*version == 0) batch.push_back(*types.to_event(account_opened{"alice"}));
  batch.push_back(*types.to_event(money_deposited{100 + int64_t(*version)}));
  // Optimistic concurrency: the batch applies only on top of what we read.
  auto res = j.append("account-1", std::move(batch),
                      expected_version::exact(*version));
  if (!res) return fail("append", res.error());
  std::cerr << "appended " << res->events.size()
            << " event(s); stream account-1 is at version "
            << res->stream_version << "\n";
  auto events = j.read_all(1, 1000);
  if (!events) return fail("read", events.error());
  for (auto& env : *events) std::cout << to_json(types, env).dump() << "\n";
  int64_t balance = 0;
  for (auto& env : *events)
    if (auto dep = types.decode<money_deposited>(env)) balance += dep->amount;
  std::cout << nlohmann::json{{"stream", "account-1"},
                              {"balance", balance},
                              {"head_position", j.head_position()}}
                   .dump()
            << "\n";
  return 0;
}
