// projections_bench: how fast an exactly-once projection catches up, and
// how far behind the live head it runs under load. One JSON object per line.
//
//   projections_bench [--quick] [--dir PATH] [--durability MODE]
//                     [--only catchup|live|slow]
//
// projection.catchup: N pre-written events (1000 streams), one read-model
//   key update (read + write of the stream's counter) per event, in the
//   handler's write transaction together with the offset; timed from spawn
//   until the offset reaches the head.
// projection.live_lag: first the maximum append rate (1 event per append,
//   1000 appends in flight), then a steady load of half of it for a few
//   seconds while a projection follows; lag per event = time the handler
//   sees it - its commit timestamp.
// projection.slow_consumer: append throughput without and with a slow
//   at-least-once projection on its own thread.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

namespace fs = std::filesystem;
namespace mp = mnemo::persistence;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

struct options {
  bool quick = false;
  fs::path dir = fs::temp_directory_path();
  std::string durability = "sync";
  std::string only;
};

[[noreturn]] void die(const std::string& what) {
  std::cerr << "projections_bench: " << what << "\n";
  std::exit(1);
}

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

mp::new_event make_event() {
  mp::new_event ev;
  ev.type = "bench.tick";
  ev.payload = {0x81, 0xa1, 'n', 0x01};  // {"n": 1}
  return ev;
}

// A node on a fresh directory.
struct bench_node {
  mnemo::runtime::node_config cfg;
  std::unique_ptr<mnemo::runtime::node> node;

  bench_node(const fs::path& dir, const std::string& durability) {
    fs::remove_all(dir);
    cfg.data_dir = dir.string();
    cfg.durability = durability;
    cfg.initial_map_mib = 1024;
    auto n = mnemo::runtime::node::start(cfg);
    if (!n) die(mnemo::runtime::describe(n.error()));
    node = std::move(*n);
  }
};

// Per-stream counters, read and written per event.
mnemo::actors::projection_spec counter_projection(std::string name,
                                                  size_t batch) {
  mnemo::actors::projection_spec spec;
  spec.name = std::move(name);
  spec.options.batch_size = batch;
  spec.apply = [](mp::write_txn& txn, const mp::event_envelope& env) {
    auto cur = mp::table_store::get_in(txn, "bench.counts", env.stream_id);
    if (!cur) return cur.error();
    auto n = *cur ? std::stoull(**cur) + 1 : 1;
    return mp::table_store::put_in(txn, "bench.counts", env.stream_id,
                                   std::to_string(n));
  };
  return spec;
}

caf::actor spawn(mnemo::runtime::node& n, mnemo::actors::projection_spec spec) {
  auto p = mnemo::actors::spawn_projection(
      n.system(), {&n.journal(), &n.completions(), n.event_bus()},
      std::move(spec));
  if (!p) die(n.system().render(p.error()));
  n.track(*p);
  return *p;
}

uint64_t offset_of(mnemo::runtime::node& n, const caf::actor& p) {
  caf::scoped_actor self{n.system()};
  uint64_t result = 0;
  self->request(p, std::chrono::seconds{30}, mnemo::actors::status_atom::value)
      .receive(
          [&](mnemo::actors::projection_status& st) { result = st.offset; },
          [&](caf::error& err) { die(n.system().render(err)); });
  return result;
}

void wait_for(mnemo::runtime::node& n, const caf::actor& p, uint64_t head) {
  while (offset_of(n, p) < head)
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
}

json bench_catchup(const options& opt, uint64_t events, size_t batch) {
  bench_node b{opt.dir / "mnemo-pbench-catchup", "nosync"};
  auto& j = b.node->journal();
  for (uint64_t i = 0; i < events; i += 1000) {
    std::vector<mp::new_event> evs(1000, make_event());
    auto res = j.append("s-" + std::to_string((i / 1000) % 1000),
                        std::move(evs), mp::expected_version::any());
    if (!res) die(res.error().to_string());
  }
  b.node.reset();  // reopen with the durability under test
  b.cfg.durability = opt.durability;
  auto n = mnemo::runtime::node::start(b.cfg);
  if (!n) die(mnemo::runtime::describe(n.error()));
  auto& node = **n;
  auto t0 = steady::now();
  auto p = spawn(node, counter_projection("catchup", batch));
  wait_for(node, p, node.journal().head_position());
  auto secs = seconds_since(t0);
  return {{"bench", "projection.catchup"},
          {"events", events},
          {"batch_size", batch},
          {"durability", opt.durability},
          {"events_per_s", std::llround(static_cast<double>(events) / secs)}};
}

// Keeps `in_flight` single-event appends going for `secs` (max rate), or
// paces them at `rate` per second; returns appends per second.
double drive_appends(mp::journal& j, double secs, size_t in_flight,
                     double rate) {
  std::mutex mtx;
  std::condition_variable cv;
  size_t outstanding = 0;
  uint64_t done = 0;
  auto t0 = steady::now();
  uint64_t sent = 0;
  while (seconds_since(t0) < secs) {
    if (rate > 0) {
      auto due = t0 + std::chrono::duration_cast<steady::duration>(
                          std::chrono::duration<double>(sent / rate));
      std::this_thread::sleep_until(due);
    }
    {
      std::unique_lock<std::mutex> guard{mtx};
      cv.wait(guard, [&] { return outstanding < in_flight; });
      ++outstanding;
    }
    j.append("live-" + std::to_string(sent % 1000), {make_event()},
             mp::expected_version::any(), [&](mp::expected<mp::append_result>) {
               std::lock_guard<std::mutex> guard{mtx};
               --outstanding;
               ++done;
               cv.notify_all();
             });
    ++sent;
  }
  std::unique_lock<std::mutex> guard{mtx};
  cv.wait(guard, [&] { return outstanding == 0; });
  return static_cast<double>(done) / seconds_since(t0);
}

json bench_live(const options& opt, bool in_commit) {
  bench_node b{opt.dir / "mnemo-pbench-live", opt.durability};
  auto& node = *b.node;
  auto secs = opt.quick ? 1.0 : 4.0;
  auto max_rate = drive_appends(node.journal(), secs / 2, 1000, 0);
  // The projection starts at the head: only live events count.
  auto head = node.journal().head_position();
  if (auto err = node.journal().offsets().store("live", head))
    die(err.to_string());
  auto lags = std::make_shared<std::vector<int64_t>>();
  lags->reserve(static_cast<size_t>(max_rate * secs));
  auto spec = counter_projection("live", 1000);
  spec.options.in_commit = in_commit;
  auto count = spec.apply;
  spec.apply = [count, lags](mp::write_txn& txn,
                             const mp::event_envelope& env) {
    lags->push_back(now_us() - env.timestamp_us);
    return count(txn, env);
  };
  auto p = spawn(node, spec);
  auto before = node.journal().stats();
  auto rate = drive_appends(node.journal(), secs, 1000, max_rate / 2);
  auto after = node.journal().stats();
  wait_for(node, p, node.journal().head_position());
  auto commits = static_cast<double>(
      std::max<uint64_t>(1, after.commits - before.commits));
  auto samples = *lags;  // the writer is idle now
  // What following costs the writers: the maximum rate again, with the
  // projection live.
  auto following_max = drive_appends(node.journal(), secs / 2, 1000, 0);
  wait_for(node, p, node.journal().head_position());
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double q) {
    if (samples.empty()) return int64_t{0};
    return samples[static_cast<size_t>(q * (samples.size() - 1))];
  };
  return {{"bench", "projection.live_lag"},
          {"in_commit", in_commit},
          {"durability", opt.durability},
          {"max_commands_per_s", std::llround(max_rate)},
          {"max_commands_per_s_following", std::llround(following_max)},
          {"commands_per_s", std::llround(rate)},
          {"events", samples.size()},
          {"lag_p50_us", pct(0.5)},
          {"lag_p99_us", pct(0.99)},
          {"lag_max_us", samples.empty() ? 0 : samples.back()},
          // Group commits under the load: events per commit and the mean
          // mdb_txn_commit duration (the lag's unit).
          {"events_per_commit",
           std::round(static_cast<double>(after.events - before.events) /
                      commits * 10) /
               10},
          {"commit_us", std::llround(static_cast<double>(after.commit_us_sum -
                                                         before.commit_us_sum) /
                                     commits)}};
}

// Write throughput without and with a slow at-least-once projection (1 ms
// per group of 10 events, on its own thread): the writers must not notice.
json bench_slow_consumer(const options& opt) {
  bench_node b{opt.dir / "mnemo-pbench-slow", opt.durability};
  auto& node = *b.node;
  auto secs = opt.quick ? 1.0 : 3.0;
  auto without = drive_appends(node.journal(), secs, 1000, 0);
  mnemo::actors::projection_spec spec;
  spec.name = "slow";
  spec.options.group_size = 10;
  spec.effect = [](const std::vector<mp::event_envelope>&) {
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
    return mp::error{};
  };
  auto p = mnemo::actors::spawn_projection(
      node.system(), {&node.journal(), &node.completions(), node.event_bus()},
      spec, /*detached=*/true);
  if (!p) die(node.system().render(p.error()));
  node.track(*p);
  auto with = drive_appends(node.journal(), secs, 1000, 0);
  auto lag = node.journal().head_position() - offset_of(node, *p);
  {
    // The journal grows during the runs: measure "without" again after
    // pausing the projection and compare with the mean of both.
    caf::scoped_actor self{node.system()};
    self->request(*p, std::chrono::seconds{30},
                  mnemo::actors::pause_atom::value)
        .receive([] {},
                 [&](caf::error& err) { die(node.system().render(err)); });
  }
  without = (without + drive_appends(node.journal(), secs, 1000, 0)) / 2;
  return {{"bench", "projection.slow_consumer"},
          {"durability", opt.durability},
          {"writes_per_s_without", std::llround(without)},
          {"writes_per_s_with", std::llround(with)},
          {"ratio", std::round(with / without * 1000) / 1000},
          {"slow_projection_lag_events", lag}};
}

options parse(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) die(arg + " needs a value");
      return std::string{argv[++i]};
    };
    if (arg == "--quick")
      opt.quick = true;
    else if (arg == "--dir")
      opt.dir = value();
    else if (arg == "--durability")
      opt.durability = value();
    else if (arg == "--only")
      opt.only = value();
    else
      die("unknown option " + arg);
  }
  return opt;
}

}  // namespace

void emit(json line) {
  line["allocator"] = MNEMO_ALLOCATOR;
  std::cout << line.dump() << std::endl;
}

int main(int argc, char** argv) {
  auto opt = parse(argc, argv);
  if (opt.only.empty() || opt.only == "catchup") {
    auto events = opt.quick ? uint64_t{100'000} : uint64_t{1'000'000};
    for (size_t batch : {1000, 5000, 10000})
      emit(bench_catchup(opt, events, batch));
  }
  if (opt.only.empty() || opt.only == "live") {
    emit(bench_live(opt, true));
    emit(bench_live(opt, false));
  }
  if (opt.only.empty() || opt.only == "slow") emit(bench_slow_consumer(opt));
  fs::remove_all(opt.dir / "mnemo-pbench-catchup");
  fs::remove_all(opt.dir / "mnemo-pbench-live");
  fs::remove_all(opt.dir / "mnemo-pbench-slow");
}
