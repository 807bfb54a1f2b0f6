// replication_bench: what quorum replication of a shard log costs, in one
// process: appends acknowledged by a majority of three replicas (three
// journals, their replicators in one actor system, the leader's
// followers reached through CAF messages, not the network) against the
// same appends to one unreplicated journal, on the same disk, alternating
// in slices. Both use the same durability mode (sync by default: every
// replica fsyncs its group commits before it answers).
//
// Prints one JSON object per line on stdout and nothing else. Options:
//   --quick            shorter slices (smoke test)
//   --in-flight N      appends kept in flight (default 256)
//   --durability MODE  sync (default), nometasync or nosync
//
// The cluster-wide figure the HA issue names (`cluster_bench --replicas
// 3`: three member processes over TLS) needs the replicators wired through
// the cluster endpoint; this bench measures the protocol without the
// network.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/replication/replicator.hpp"

namespace fs = std::filesystem;
namespace pe = mnemo::persistence;
namespace repl = mnemo::runtime::replication;
using clock_type = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

namespace {

constexpr uint32_t shard = 0;
constexpr size_t streams = 1000;

pe::durability mode = pe::durability::sync;

pe::new_event make_event() {
  pe::new_event e;
  e.type = "bench.value";
  // msgpack {"v": bin(200)}
  e.payload = {0x81, 0xa1, 'v', 0xc4, 200};
  e.payload.resize(e.payload.size() + 200, 0x5a);
  return e;
}

std::unique_ptr<pe::journal> open(const fs::path& dir,
                                  std::shared_ptr<pe::replication_gate> gate,
                                  bool sharded) {
  fs::create_directories(dir.parent_path());
  pe::journal_config cfg;
  cfg.directory = dir.string();
  cfg.mode = mode;
  cfg.initial_map_size = uint64_t{1} << 30;
  cfg.gate = std::move(gate);
  if (sharded)
    cfg.shard_of = [](std::string_view) -> std::optional<uint32_t> {
      return shard;
    };
  auto j = pe::journal::open(cfg);
  if (!j) {
    std::cerr << "open: " << j.error().to_string() << "\n";
    std::exit(1);
  }
  return std::move(*j);
}

// Keeps `in_flight` appends outstanding on `j` for `seconds`; returns the
// appends acknowledged.
uint64_t drive(pe::journal& j, size_t in_flight, double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> failed{0};
  std::mutex mtx;
  std::condition_variable cv;
  size_t outstanding = 0;
  std::atomic<uint64_t> next{0};
  std::function<void()> submit;
  submit = [&] {
    auto n = next.fetch_add(1);
    std::vector<pe::new_event> evs{make_event()};
    j.append("s-" + std::to_string(n % streams), std::move(evs),
             pe::expected_version::any(), [&](pe::expected<pe::append_result> r) {
               if (r)
                 acked.fetch_add(1);
               else
                 failed.fetch_add(1);
               if (!stop.load()) return submit();
               std::lock_guard<std::mutex> guard{mtx};
               if (--outstanding == 0) cv.notify_all();
             });
  };
  {
    std::lock_guard<std::mutex> guard{mtx};
    outstanding = in_flight;
  }
  for (size_t i = 0; i < in_flight; ++i) submit();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto counted = acked.load();
  stop = true;
  std::unique_lock<std::mutex> guard{mtx};
  cv.wait(guard, [&] { return outstanding == 0; });
  if (failed.load() > 0) {
    std::cerr << failed.load() << " appends failed\n";
    std::exit(1);
  }
  return counted;
}

struct replicated_set {
  caf::actor_system& sys;
  std::vector<std::shared_ptr<repl::shard_gate>> gates;
  std::vector<std::unique_ptr<pe::journal>> journals;
  std::vector<caf::actor> replicators;

  replicated_set(caf::actor_system& s, const fs::path& base) : sys(s) {
    const char* ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      gates.push_back(std::make_shared<repl::shard_gate>());
      journals.push_back(open(base / ids[i], gates.back(), true));
      repl::replicator_settings rs;
      rs.member = ids[i];
      replicators.push_back(
          repl::spawn_replicator(sys, *journals.back(), gates.back(), rs));
    }
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 3; ++k)
        if (i != k)
          caf::anon_send(replicators[i], repl::repl_peer_atom::value,
                         std::string{ids[k]}, replicators[k]);
    caf::scoped_actor self{sys};
    bool ok = false;
    self->request(replicators[0], std::chrono::seconds{10},
                  repl::repl_lead_atom::value, shard, uint64_t{1},
                  std::vector<std::string>{"b", "c"})
        .receive([&] { ok = true; }, [&](caf::error&) {});
    if (!ok) {
      std::cerr << "the leader did not lead\n";
      std::exit(1);
    }
  }

  ~replicated_set() {
    caf::scoped_actor self{sys};
    for (auto& r : replicators) {
      self->monitor(r);
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {});
    }
    journals.clear();
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  size_t in_flight = 256;
  std::string mode_name = "sync";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--in-flight" && i + 1 < argc) {
      in_flight = std::stoul(argv[++i]);
    } else if (a == "--durability" && i + 1 < argc) {
      mode_name = argv[++i];
      if (mode_name == "nosync")
        mode = pe::durability::nosync;
      else if (mode_name == "nometasync")
        mode = pe::durability::nometasync;
      else if (mode_name != "sync")
        return std::cerr << "unknown durability " << mode_name << "\n", 2;
    } else {
      std::cerr << "usage: replication_bench [--quick] [--in-flight N] "
                   "[--durability sync|nometasync|nosync]\n";
      return 2;
    }
  }
  double slice = quick ? 0.5 : 3.0;
  int slices = 4;
  auto base = fs::temp_directory_path() /
              ("mnemo-replication-bench-" + std::to_string(::getpid()));
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  uint64_t repl_total = 0, base_total = 0;
  double ratio_min = 1e9, ratio_max = 0;
  for (int s = 0; s < slices; ++s) {
    fs::remove_all(base);
    uint64_t r = 0, b = 0;
    {
      replicated_set set{sys, base / "replicated"};
      r = drive(*set.journals[0], in_flight, slice);
    }
    {
      auto j = open(base / "single", nullptr, false);
      b = drive(*j, in_flight, slice);
    }
    repl_total += r;
    base_total += b;
    if (b > 0) {
      ratio_min = std::min(ratio_min, double(r) / double(b));
      ratio_max = std::max(ratio_max, double(r) / double(b));
    }
    std::cerr << "slice " << s << ": replicated " << r << ", unreplicated "
              << b << "\n";
  }
  fs::remove_all(base);
  auto seconds = slice * slices;
  json out;
  out["bench"] = "replication.appends";
  out["replicas"] = 3;
  out["acks"] = "quorum";
  out["transport"] = "in-process";
  out["durability"] = mode_name;
  out["in_flight"] = in_flight;
  out["appends_per_s"] = double(repl_total) / seconds;
  out["baseline"] = "one unreplicated journal, same process and disk";
  out["baseline_appends_per_s"] = double(base_total) / seconds;
  out["ratio"] = base_total > 0 ? double(repl_total) / double(base_total) : 0;
  out["slice_ratio_min"] = ratio_min;
  out["slice_ratio_max"] = ratio_max;
  out["seconds_each"] = seconds;
  std::cout << out.dump() << std::endl;
  if (repl_total == 0 || base_total == 0) {
    std::cerr << "a figure of 0 is a bug\n";
    return 1;
  }
}
