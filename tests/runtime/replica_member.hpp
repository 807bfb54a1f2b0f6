#pragma once

// A member of a replicated shard for the replication and failover tests:
// its data directory, journal (shard 3 for every stream but "local-..."),
// gate and replicator.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/replication/replicator.hpp"

namespace mnemo::test {

namespace pe = mnemo::persistence;
using runtime::replication::replicator_settings;
using runtime::replication::shard_gate;
using runtime::replication::spawn_replicator;

inline constexpr uint32_t shard = 3;

inline pe::new_event event(const std::string& v) {
  pe::new_event e;
  e.type = "test.value";
  e.payload = {0x81, 0xa1, 'v', static_cast<uint8_t>(0xa0 | v.size())};
  e.payload.insert(e.payload.end(), v.begin(), v.end());
  return e;
}

// One member: its data directory, gate, journal and replicator.
struct member {
  std::string id;
  actors::temp_directory dir;
  std::shared_ptr<shard_gate> gate;
  std::unique_ptr<pe::journal> journal;
  caf::actor replicator;

  caf::actor_system* sys = nullptr;

  // `await_identity`: no shard votes until a coordinator checked the
  // member's identity (replicator_settings::await_identity).
  void start(caf::actor_system& system, bool await_identity = false) {
    sys = &system;
    gate = std::make_shared<shard_gate>();
    pe::journal_config cfg;
    cfg.directory = (dir.path() / "data").string();
    cfg.mode = pe::durability::nosync;
    cfg.gate = gate;
    cfg.shard_of = [](std::string_view s) -> std::optional<uint32_t> {
      if (s.rfind("local-", 0) == 0) return std::nullopt;
      return shard;
    };
    auto j = pe::journal::open(cfg);
    BOOST_REQUIRE_MESSAGE(j, (j ? "" : j.error().to_string()));
    journal = std::move(*j);
    replicator_settings rs;
    rs.member = id;
    rs.request_timeout_ms = 500;
    rs.tick_ms = 20;
    rs.max_batch_records = 16;
    rs.await_identity = await_identity;
    replicator = spawn_replicator(system, *journal, gate, rs);
  }

  // Stops the replicator (waiting until it is gone), then closes the
  // journal.
  void stop() {
    if (replicator) {
      caf::scoped_actor self{*sys};
      self->monitor(replicator);
      caf::anon_send_exit(replicator, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {});
      replicator = nullptr;
    }
    journal.reset();
  }

  ~member() { stop(); }

  pe::replica_log log() { return pe::replica_log{*journal, shard}; }

  std::vector<std::string> records() {
    std::vector<std::string> out;
    auto l = log();
    for (uint64_t from = 1; from <= l.end_position().value();) {
      auto b = l.read(from, 1000, 1 << 20).value();
      out.insert(out.end(), b.records.begin(), b.records.end());
      from = b.end_position();
    }
    return out;
  }
};

}  // namespace mnemo::test
