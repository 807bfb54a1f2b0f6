// actors_bench: end-to-end figures of persistent aggregates on a node.
// Prints one JSON object per line on stdout; progress goes to stderr.
//   --quick               about 10x smaller runs (smoke test)
//   --dir PATH            base of this run's data directory (default: /tmp);
//                         removed at the end
//   --durability MODE     sync (default), nometasync or nosync
//   --only NAME           only commands, recovery, memory or activation
//   --SECTION.KEY=VALUE   to every node's configuration, e.g.
//                         --scheduler.max-threads=1 (default: one per core)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <unistd.h>

#include <lmdb.h>
#include <caf/actor_storage.hpp>
#include <caf/all.hpp>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "memory_meter.hpp"
#include "mnemo/actors/aggregate.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/node.hpp"
#include "raw_lmdb.hpp"

namespace fs = std::filesystem;
namespace mp = mnemo::persistence;
namespace ma = mnemo::actors;
namespace mr = mnemo::runtime;
using clock_type = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

namespace {

// -- the benchmark aggregate: a counter; every command persists one event ----

struct increment {};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, increment&) {
  return f(caf::meta::type_name("increment"));
}

struct incremented {
  int64_t by = 1;
  MSGPACK_DEFINE_MAP(by)
};

struct tally {
  int64_t total = 0;
  MSGPACK_DEFINE_MAP(total)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tally& x) {
  return f(caf::meta::type_name("tally"), x.total);
}

struct counter {
  using state = tally;
  using command = std::variant<increment>;
  using event = std::variant<incremented>;
  using reply = tally;
  static constexpr const char* type_name = "counter";

  static ma::effect<counter> handle(const state&, const command&) {
    return ma::effect<counter>::persist(incremented{1},
                                        [](const state& s) { return s; });
  }
  static state apply(state s, const event& ev) {
    s.total += std::get<incremented>(ev).by;
    return s;
  }
};

using aggregate = ma::aggregate_actor<counter>;

// -- helpers ------------------------------------------------------------------

struct options {
  bool quick = false;
  fs::path base = fs::temp_directory_path();
  std::string durability = "sync";
  std::string only;                    // empty: every benchmark
  std::vector<std::string> node_args;  // for node_config::parse
};

fs::path run_dir;  // this run's directory under --dir; removed at the end
std::optional<memory_meter> meter;  // opened in main for memory, activation

[[noreturn]] void die(const std::string& what) {
  std::cerr << "actors_bench: " << what << '\n';
  std::error_code ec;
  if (!run_dir.empty()) fs::remove_all(run_dir, ec);
  std::_Exit(1);  // actors may still run: skip static destructors
}

void emit(json line) {
  line["allocator"] = MNEMO_ALLOCATOR;
  std::cout << line.dump() << std::endl;
  if (!std::cout) die("stdout closed");
}

template <class T>
T take(mp::expected<T> x, const char* what) {
  if (!x) die(std::string{what} + ": " + x.error().to_string());
  return std::move(x).value();
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of the whole process (all threads), in seconds.
double process_cpu_seconds() {
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

double round_to(double x, int digits) {
  auto scale = std::pow(10.0, digits);
  return std::round(x * scale) / scale;
}

options parse_args(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--quick") {
      opt.quick = true;
    } else if (arg == "--dir") {
      opt.base = value();
    } else if (arg == "--durability") {
      opt.durability = value();
    } else if (arg == "--only") {
      opt.only = value();
    } else if (arg.rfind("--", 0) == 0 && arg.find('.') != std::string::npos) {
      opt.node_args.push_back(arg);
    } else {
      die("unknown option '" + arg +
          "' (use --quick, --dir PATH, --durability MODE, --only NAME)");
    }
  }
  return opt;
}

// A node with the counter's types registered; the config outlives the node.
struct bench_node {
  std::unique_ptr<mr::node_config> cfg = std::make_unique<mr::node_config>();
  std::unique_ptr<mr::node> n;

  bench_node(const fs::path& dir, const options& opt) {
    if (auto err = cfg->parse(opt.node_args))
      die("node options: " + cfg->render(err));
    cfg->data_dir = dir.string();
    cfg->durability = opt.durability;
    cfg->initial_map_mib = 1024;
    auto started = mr::node::start(*cfg);
    if (!started) die("node::start: " + mr::describe(started.error()));
    n = std::move(*started);
    n->registry().add<incremented>("counter.incremented");
    n->registry().add<tally>("counter.tally");
  }

  caf::actor_system& sys() { return n->system(); }

  ma::aggregate_context context(uint64_t snapshot_every) {
    auto opts = ma::aggregate_options::from(*cfg);
    opts.snapshot_every = snapshot_every;
    return {&n->journal(), &n->registry(), &n->completions(), opts, nullptr};
  }
};

// Appends `per_stream` events to each stream, in appends of at most 1000
// events, all queued at once. Set-up, not measured.
void fill(bench_node& bn, const std::vector<std::string>& streams,
          uint64_t per_stream) {
  auto ev = take(bn.n->registry().to_event(incremented{}), "encode");
  std::atomic<uint64_t> left{streams.size() * ((per_stream + 999) / 1000)};
  std::atomic<uint64_t> failures{0};
  std::promise<void> filled;
  for (auto& stream : streams)
    for (uint64_t i = 0; i < per_stream; i += 1000) {
      std::vector<mp::new_event> batch(std::min<uint64_t>(1000, per_stream - i),
                                       ev);
      bn.n->journal().append(stream, std::move(batch),
                             mp::expected_version::any(),
                             [&](mp::expected<mp::append_result> res) {
                               failures += res ? 0 : 1;
                               if (--left == 0) filled.set_value();
                             });
    }
  filled.get_future().wait();
  if (failures != 0) die("filling the journal failed");
}

// Ids `prefix` + a 0-padded number, all of one length (so all records of one
// benchmark have one size); with `events` > 0 their streams get that many.
std::vector<std::string> make_ids(bench_node& bn, const char* prefix, size_t n,
                                  uint64_t events) {
  std::vector<std::string> ids, streams;
  for (size_t i = 0; i < n; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s%06zu", prefix, i);
    ids.emplace_back(buf);
    streams.push_back(ma::stream_of<counter>(buf));
  }
  if (events > 0) fill(bn, streams, events);
  return ids;
}

// -- load driver --------------------------------------------------------------

// A load: `lanes` requests kept outstanding; each reply on a lane sends that
// lane's next request until `keep_going` says stop.
struct load {
  size_t lanes = 0;
  uint64_t min_requests = 0;  // keep going until this many were sent ...
  double min_seconds = 0;     // ... and this much time passed,
  double max_seconds = 600;   // but never longer than this
  uint64_t max_requests = 0;  // or more requests than this
  int64_t expect_total = -1;  // each reply's total, unless -1
  size_t first_lane = 0;      // numbers of this part's first lane ...
  uint64_t first = 0;         // ... and first request
  // Results; only the part's driver touches them until `finished` is set.
  uint64_t issued = 0, failures = 0;
  std::string first_error;
  size_t running = 0;
  std::vector<int64_t> latency_ns;
  clock_type::time_point t0;
  double seconds = 0;
  std::promise<void> finished;

  bool keep_going() const {
    if (issued >= max_requests) return false;
    auto elapsed = seconds_since(t0);
    if (elapsed >= max_seconds) return false;
    return issued < min_requests || elapsed < min_seconds;
  }
  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_type::now() - t0)
        .count();
  }
  double percentile_us(double p) const {
    if (latency_ns.empty()) return 0;
    auto v = latency_ns;
    auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
    return round_to(static_cast<double>(v[k]) / 1000.0, 1);
  }
  void fail(uint64_t n, const std::string& what) {
    if (n > 0 && failures == 0) first_error = what;
    failures += n;
  }
};

using load_ptr = std::shared_ptr<load>;

// `send(self, lane, i)` makes request number `i` on `lane`.
template <class Send>
void issue(caf::event_based_actor* self, const load_ptr& ld, size_t lane,
           const Send& send) {
  auto i = ld->first + ld->issued++;
  auto sent = ld->now_ns();
  auto next = [self, ld, lane, send, sent] {
    ld->latency_ns.push_back(ld->now_ns() - sent);
    if (ld->keep_going()) return issue(self, ld, lane, send);
    if (--ld->running > 0) return;
    ld->seconds = seconds_since(ld->t0);
    ld->finished.set_value();
  };
  send(self, lane, i)
      .then(
          [ld, next](tally& t) {
            if (ld->expect_total >= 0 && t.total != ld->expect_total)
              ld->fail(1, "reply total " + std::to_string(t.total));
            next();
          },
          [self, ld, next](caf::error& err) {
            ld->fail(1, self->system().render(err));
            next();
          });
}

// Runs load `cfg` split over 10 driver actors (CAF keeps an actor's pending
// requests in a flat table: one actor with 1000 of them spends much of its
// time searching it); returns the merged result.
template <class Send>
load_ptr drive(caf::actor_system& sys, const load& cfg, Send send) {
  constexpr uint64_t drivers = 10;
  std::vector<load_ptr> parts;
  auto t0 = clock_type::now();
  for (uint64_t d = 0; d < drivers; ++d) {
    auto share = [d](uint64_t x) {
      return x * (d + 1) / drivers - x * d / drivers;
    };
    auto ld = std::make_shared<load>();
    ld->lanes = std::min(share(cfg.lanes), share(cfg.max_requests));
    ld->min_requests = share(cfg.min_requests);
    ld->max_requests = share(cfg.max_requests);
    ld->min_seconds = cfg.min_seconds;
    ld->max_seconds = cfg.max_seconds;
    ld->expect_total = cfg.expect_total;
    ld->first_lane = cfg.lanes * d / drivers;
    ld->first = cfg.max_requests * d / drivers;
    ld->t0 = t0;
    ld->latency_ns.reserve(std::min<uint64_t>(ld->max_requests, 2000000));
    ld->running = ld->lanes;
    if (ld->lanes == 0) ld->finished.set_value();
    sys.spawn([ld, send](caf::event_based_actor* self) {
      for (size_t lane = 0; lane < ld->lanes; ++lane)
        issue(self, ld, ld->first_lane + lane, send);
    });
    parts.push_back(std::move(ld));
  }
  auto all = std::make_shared<load>();
  for (auto& ld : parts) {
    ld->finished.get_future().wait();
    all->issued += ld->issued;
    all->fail(ld->failures, ld->first_error);
    all->seconds = std::max(all->seconds, ld->seconds);
    all->latency_ns.insert(all->latency_ns.end(), ld->latency_ns.begin(),
                           ld->latency_ns.end());
  }
  if (all->failures != 0)
    die(std::to_string(all->failures) +
        " requests failed; first: " + all->first_error);
  return all;
}

// A load of exactly `n` requests, `lanes` of them in flight.
load counted(uint64_t n, size_t lanes, int64_t expect_total) {
  load ld;
  ld.lanes = lanes;
  ld.min_requests = ld.max_requests = n;
  ld.expect_total = expect_total;
  return ld;
}

// Sends `get` to every handle, 1000 in flight; each must answer `total`.
void get_all(caf::actor_system& sys, const std::vector<caf::actor>& handles,
             int64_t total) {
  drive(sys, counted(handles.size(), 1000, total),
        [hs = &handles](caf::event_based_actor* self, size_t, uint64_t i) {
          return self->request((*hs)[i], caf::infinite, caf::get_atom::value);
        });
}

// -- actors.commands ----------------------------------------------------------

// `in_flight` commands outstanding, one per lane, lanes spread evenly over
// the aggregates (each reply sends its lane's aggregate the next command).
json bench_commands(const options& opt, size_t aggregates, size_t in_flight) {
  std::cerr << "actors.commands " << opt.durability << " ...\n";
  auto dir = run_dir / "commands";
  load cfg;
  cfg.lanes = in_flight;
  cfg.min_requests = opt.quick ? 30000 : 300000;
  cfg.min_seconds = opt.quick ? 0.5 : 3.0;
  cfg.max_seconds = opt.quick ? 5.0 : 15.0;
  cfg.max_requests = 5000000;
  load_ptr ld;
  uint64_t commits = 0;
  double cpu = 0;
  {
    bench_node bn{dir, opt};
    auto ctx = bn.context(1000);
    std::vector<caf::actor> aggs;
    for (auto& id : make_ids(bn, "c", aggregates, 0)) {
      aggs.push_back(bn.sys().spawn<aggregate>(ctx, id));
      bn.n->track(aggs.back());
    }
    get_all(bn.sys(), aggs, 0);  // recovered before the clock starts
    auto token = bn.n->journal().subscribe([&](uint64_t) { ++commits; });
    cpu = process_cpu_seconds();
    ld = drive(
        bn.sys(), cfg,
        [as = &aggs](caf::event_based_actor* self, size_t lane, uint64_t) {
          return self->request((*as)[lane % as->size()], caf::infinite,
                               ma::command_atom::value, std::string{},
                               counter::command{increment{}});
        });
    cpu = process_cpu_seconds() - cpu;
    bn.n->journal().unsubscribe(token);
  }
  auto events = ld->issued;
  auto rate = static_cast<double>(events) / ld->seconds;
  auto record_bytes = raw_lmdb::record_bytes(dir);
  if (record_bytes == 0) die("cannot read the record size in " + dir.string());
  fs::remove_all(dir);
  std::cerr << "  " << events << " commands, " << commits
            << " commits; raw LMDB with batches of " << in_flight << " ...\n";
  unsigned flags = MDB_NOTLS;
  if (opt.durability == "nometasync") flags |= MDB_NOMETASYNC;
  if (opt.durability == "nosync") flags |= MDB_NOSYNC;
  double raw = 0;
  try {
    raw =
        raw_lmdb::rate(run_dir / "raw", flags, record_bytes, in_flight, events);
  } catch (const std::exception& e) {
    die(e.what());
  }
  auto per_commit = static_cast<double>(events) /
                    static_cast<double>(std::max<uint64_t>(commits, 1));
  return {{"bench", "actors.commands"},
          {"aggregates", aggregates},
          {"in_flight", in_flight},
          {"durability", opt.durability},
          {"commands_per_s", std::llround(rate)},
          {"p50_us", ld->percentile_us(0.50)},
          {"p99_us", ld->percentile_us(0.99)},
          {"raw_lmdb_events_per_s", std::llround(raw)},
          {"ratio", round_to(rate / raw, 3)},
          {"commands", events},
          {"mean_batch", round_to(per_commit, 1)},
          {"record_bytes", record_bytes},
          {"cpu_us_per_command",
           round_to(cpu * 1e6 / static_cast<double>(events), 2)}};
}

// -- actors.recovery ----------------------------------------------------------

// Stream "counter-r" gets `events` events; with `snapshot`, the last one is
// persisted by an aggregate whose policy snapshots every 1000 events, so a
// snapshot covers the whole stream. Then, on a restarted node, times spawn
// -> first `get` reply of a fresh instance, 5 times.
json bench_recovery(const options& opt, uint64_t events, bool snapshot) {
  std::cerr << "actors.recovery snapshot=" << snapshot << " ...\n";
  auto dir = run_dir / (snapshot ? "recovery-snap" : "recovery");
  const std::string id = "r";
  auto stream = ma::stream_of<counter>(id);
  {
    bench_node setup{dir, opt};
    fill(setup, {stream}, snapshot ? events - 1 : events);
    if (snapshot) {
      auto a = setup.sys().spawn<aggregate>(setup.context(1000), id);
      setup.n->track(a);  // the node's shutdown waits for its snapshot
      caf::scoped_actor self{setup.sys()};
      self->request(a, caf::infinite, ma::command_atom::value, std::string{},
                    counter::command{increment{}})
          .receive([](tally&) {}, [](caf::error&) { die("command failed"); });
    }
  }
  bench_node bn{dir, opt};
  auto snap = take(
      bn.n->journal().snapshots().load(stream, mp::snapshot_criteria::latest()),
      "load snapshot");
  if (snapshot != (snap && snap->meta.sequence == events))
    die("no snapshot at sequence " + std::to_string(events));
  auto ctx = bn.context(snapshot ? 1000 : 0);
  caf::scoped_actor self{bn.sys()};
  std::vector<double> ms;
  for (int run = 0; run < 5; ++run) {
    auto t0 = clock_type::now();
    auto a = bn.sys().spawn<aggregate>(ctx, id);
    self->request(a, caf::infinite, caf::get_atom::value)
        .receive(
            [&](tally& t) {
              ms.push_back(seconds_since(t0) * 1000.0);
              if (static_cast<uint64_t>(t.total) != events)
                die("recovered total " + std::to_string(t.total));
            },
            [&](caf::error& err) { die("recovery: " + bn.sys().render(err)); });
    self->send_exit(a, caf::exit_reason::user_shutdown);
    self->wait_for(a);
  }
  auto first = ms.front();
  std::sort(ms.begin(), ms.end());
  return {{"bench", "actors.recovery"},
          {"events", events},
          {"snapshot", snapshot},
          {"ms", round_to(ms[2], 2)},
          {"max_ms", round_to(ms.back(), 2)},
          {"first_ms", round_to(first, 2)}};
}

// -- actors.memory and actors.activation --------------------------------------

// The process's memory after its allocator gave free pages back, so that
// resident figures count pages in use.
memory_sample sample_memory() {
  meter->release_free_pages();
  std::string why;
  auto s = meter->sample(why);
  if (!s) die("cannot measure memory: " + why);
  return *s;
}

int64_t per(int64_t bytes, size_t count) {
  return std::llround(static_cast<double>(bytes) / static_cast<double>(count));
}

// Each aggregate's actor (CAF's control block and the object) is one heap
// block of this size.
constexpr int64_t actor_storage_bytes =
    static_cast<int64_t>(sizeof(caf::actor_storage<aggregate>));

// Stops the bench if `heap` bytes per aggregate cannot be true: the actors
// alone take `actor_storage_bytes` each, so less means the counter misses
// this process's blocks and a figure from it would be wrong.
void check_heap_figure(const char* bench, int64_t heap) {
  if (heap >= actor_storage_bytes) return;
  die(std::string{bench} + ": the heap grew by " + std::to_string(heap) +
      " bytes per aggregate, less than the " +
      std::to_string(actor_storage_bytes) + " bytes of each actor alone: " +
      meter->allocator() + "'s counter misses this process's blocks");
}

constexpr int64_t events_each = 3;  // in each stream before activation

// `count` aggregates spawned directly, each recovered (and answering `get`).
json bench_memory(const options& opt, size_t count) {
  std::cerr << "actors.memory ...\n";
  bench_node bn{run_dir / "memory", opt};
  auto ids = make_ids(bn, "m", count, events_each);
  auto ctx = bn.context(1000);
  std::vector<caf::actor> aggs;
  aggs.reserve(count);
  auto before = sample_memory();
  for (auto& id : ids) aggs.push_back(bn.sys().spawn<aggregate>(ctx, id));
  get_all(bn.sys(), aggs, events_each);
  // Let the finished driver actor go away before sampling.
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  auto after = sample_memory();
  for (auto& a : aggs) bn.n->track(a);
  auto heap = per(after.heap - before.heap, count);
  check_heap_figure("actors.memory", heap);
  auto anon = per(after.rss_anon - before.rss_anon, count);
  if (anon <= 0)
    die("actors.memory: resident anonymous memory grew by " +
        std::to_string(anon) + " bytes per aggregate; cannot measure it");
  return {{"bench", "actors.memory"},
          {"active_aggregates", count},
          {"heap_bytes_per_aggregate", heap},
          {"rss_bytes_per_aggregate", per(after.rss - before.rss, count)},
          {"rss_anon_bytes_per_aggregate", anon},
          {"rss_file_bytes_per_aggregate",
           per(after.rss_file - before.rss_file, count)},
          {"heap_allocator", meter->allocator()},
          {"sizeof_actor", sizeof(aggregate)},
          {"actor_storage_bytes", actor_storage_bytes}};
}

// `count` aggregates activated through the entity registry by a first
// command each, `in_flight` of them at a time.
json bench_activation(const options& opt, size_t count, size_t in_flight) {
  std::cerr << "actors.activation ...\n";
  bench_node bn{run_dir / "activation", opt};
  auto ids = make_ids(bn, "a", count, events_each);
  auto ctx = bn.context(1000);
  auto settings = bn.cfg->registry_settings();
  settings.max_active = std::max(settings.max_active, count);
  auto registry = mr::spawn_entity_registry(
      bn.sys(),
      [ctx](caf::actor_system& s, const std::string& id) {
        return s.spawn<aggregate>(ctx, id);
      },
      settings);
  bn.n->track(registry);
  auto before = sample_memory();
  auto ld = drive(
      bn.sys(), counted(count, in_flight, events_each + 1),
      [is = &ids, registry](caf::event_based_actor* self, size_t, uint64_t i) {
        return self->request(registry, caf::infinite, mr::route_atom::value,
                             (*is)[i],
                             ma::command_message<counter>(increment{}));
      });
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  auto after = sample_memory();
  auto heap = per(after.heap - before.heap, count);
  check_heap_figure("actors.activation", heap);
  return {{"bench", "actors.activation"},
          {"aggregates", count},
          {"activations_per_s",
           std::llround(static_cast<double>(count) / ld->seconds)},
          {"in_flight", in_flight},
          {"durability", opt.durability},
          {"p50_us", ld->percentile_us(0.50)},
          {"p99_us", ld->percentile_us(0.99)},
          {"heap_bytes_per_entity", heap},
          {"rss_anon_bytes_per_entity",
           per(after.rss_anon - before.rss_anon, count)},
          {"heap_allocator", meter->allocator()}};
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse_args(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  run_dir = opt.base / ("mnemo-actors-bench-" + std::to_string(::getpid()));
  std::error_code ec;
  if (!fs::create_directories(run_dir, ec))
    die("cannot create '" + run_dir.string() + "': " + ec.message());
  size_t scale = opt.quick ? 10 : 1;
  auto wanted = [&](const char* name) {
    return opt.only.empty() || opt.only == name;
  };
  if (wanted("memory") || wanted("activation")) {
    // Before the nodes start threads: the meter's check needs a quiet heap.
    std::string why;
    meter = memory_meter::open(why);
    if (!meter) die("cannot measure the heap: " + why);
    if (std::string{MNEMO_ALLOCATOR} == "jemalloc" &&
        std::string{meter->allocator()} != "jemalloc")
      die("built with MNEMO_JEMALLOC, but malloc is not jemalloc's: "
          "libjemalloc must come before libc among the libraries");
  }
  if (wanted("commands")) emit(bench_commands(opt, 1000, 1000));
  if (wanted("recovery")) {
    emit(bench_recovery(opt, 100000 / scale, false));
    emit(bench_recovery(opt, 100000 / scale, true));
  }
  if (wanted("memory")) emit(bench_memory(opt, 100000 / scale));
  if (wanted("activation")) emit(bench_activation(opt, 100000 / scale, 1000));
  fs::remove_all(run_dir, ec);
  return 0;
}
