// journal_bench: throughput of the journal's append and read paths.
//
// Prints one JSON object per line on stdout and nothing else; progress goes
// to stderr. Options:
//   --quick                 about 10x smaller runs (smoke test)
//   --dir PATH              base directory for temporary data (default: a
//                           fresh directory under /tmp); removed at the end
//   --durability MODE       sync (default), nometasync or nosync, for the
//                           append runs and their raw LMDB baseline
//   --only NAME             run only append, replay_stream or read_all
//   --in-flight N           run only the append configuration with N
//                           appends in flight (1000, 64 or 1)
//   --submit callback|thread
//                           how appends are kept in flight: each completion
//                           callback submits the next append itself
//                           (default: exactly in_flight outstanding), or the
//                           main thread refills free slots as they open
//
// journal.append compares the journal with a plain LMDB loop run in the
// same process on the same disk: records of the journal's stored size,
// MDB_APPEND, one commit per mean group-commit batch of the journal run.
// The two alternate in four slices (journal, raw, journal, raw, ...) and
// the figures are the totals; slice_ratio_min/max show the spread.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <time.h>

#include <lmdb.h>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/persistence/journal.hpp"
#include "raw_lmdb.hpp"

namespace fs = std::filesystem;
namespace mp = mnemo::persistence;
using clock_type = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

namespace {

constexpr size_t payload_size = 200;
constexpr size_t stream_count = 1000;
constexpr const char* event_type = "bench.appended";
constexpr size_t read_chunk = 10000;

struct options {
  bool quick = false;
  fs::path base = fs::temp_directory_path();
  mp::durability mode = mp::durability::sync;
  bool submit_from_callback = true;
  std::string only;        // empty: every benchmark
  uint64_t in_flight = 0;  // 0: every append configuration
};

// This run's directory under --dir; removed on every way out.
fs::path run_dir;

void remove_run_dir() {
  std::error_code ec;
  if (!run_dir.empty()) fs::remove_all(run_dir, ec);
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "journal_bench: " << what << '\n';
  remove_run_dir();
  std::exit(1);
}

// Prints one result line; stops quietly once nobody reads stdout (e.g.
// piped into `head`), instead of dying of SIGPIPE with data left behind.
void emit(json line) {
  line["allocator"] = MNEMO_ALLOCATOR;
  std::cout << line.dump() << std::endl;
  if (!std::cout) {
    remove_run_dir();
    std::exit(1);
  }
}

template <class T>
T take(mp::expected<T> x, const char* what) {
  if (!x) die(std::string{what} + ": " + x.error().to_string());
  return std::move(x).value();
}

// CPU time of the whole process (all threads).
double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Bytes the process has passed to write system calls so far (`wchar` of
// /proc/self/io): for LMDB, the pages and meta pages its commits write.
uint64_t process_written_bytes() {
  std::ifstream io{"/proc/self/io"};
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value)
    if (key == "wchar:") return value;
  return 0;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of the calling thread: unlike wall time, it does not count time
// the machine gave to other processes.
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         static_cast<double>(ts.tv_nsec) * 1e-9;
}

// `x` rounded to `digits` decimals (dividing keeps the shortest printing).
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
      auto v = value();
      if (v == "sync")
        opt.mode = mp::durability::sync;
      else if (v == "nometasync")
        opt.mode = mp::durability::nometasync;
      else if (v == "nosync")
        opt.mode = mp::durability::nosync;
      else
        die("unknown durability '" + v + "'");
    } else if (arg == "--only") {
      opt.only = value();
      if (opt.only != "append" && opt.only != "replay_stream" &&
          opt.only != "read_all")
        die("--only takes append, replay_stream or read_all");
    } else if (arg == "--in-flight") {
      auto v = value();
      opt.in_flight = std::strtoull(v.c_str(), nullptr, 10);
      if (opt.in_flight != 1000 && opt.in_flight != 64 && opt.in_flight != 1)
        die("--in-flight takes 1000, 64 or 1");
    } else if (arg == "--submit") {
      auto v = value();
      if (v != "thread" && v != "callback")
        die("--submit takes thread or callback");
      opt.submit_from_callback = v == "callback";
    } else {
      die("unknown option '" + arg +
          "' (use --quick, --dir PATH, --durability MODE, --only NAME, "
          "--in-flight N, --submit WHO)");
    }
  }
  return opt;
}

// -- event shape --------------------------------------------------------------

// A msgpack map of exactly `size` bytes, shaped like a domain event.
std::vector<uint8_t> make_payload(size_t size) {
  for (size_t pad = 0; pad < size; ++pad) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(4);
    pk.pack(std::string{"account"});
    pk.pack(std::string{"account-000042"});
    pk.pack(std::string{"amount"});
    pk.pack(uint64_t{1234567});
    pk.pack(std::string{"currency"});
    pk.pack(std::string{"EUR"});
    pk.pack(std::string{"note"});
    pk.pack(std::string(pad, 'x'));
    if (buf.size() == size) return {buf.data(), buf.data() + buf.size()};
  }
  die("cannot shape a payload of " + std::to_string(size) + " bytes");
}

std::string stream_name(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "stream-%04zu", i % 10000);
  return buf;
}

size_t str_size(size_t n) {
  return n + (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5);
}

size_t bin_size(size_t n) {
  return n + (n < 256 ? 2 : n < 65536 ? 3 : 5);
}

// Stored size of one of our events, per the record layout (29-byte header,
// msgpack array of id, stream, type, schema version, correlation id,
// causation id, tags, metadata, payload). Checked against the journal's
// data file by raw_lmdb::record_bytes().
size_t record_bytes_for(size_t stream_len) {
  return 29 + 1 + bin_size(16) + str_size(stream_len) +
         str_size(std::strlen(event_type)) + 1 + str_size(0) + str_size(0) + 1 +
         1 + bin_size(payload_size);
}

std::vector<mp::new_event> make_events(const std::vector<uint8_t>& payload,
                                       size_t n) {
  std::vector<mp::new_event> events(n);
  for (auto& ev : events) {
    ev.type = event_type;
    ev.payload = payload;
  }
  return events;
}

std::unique_ptr<mp::journal> open_journal(const fs::path& dir,
                                          mp::durability mode,
                                          uint64_t map_size = 64ull << 20) {
  mp::journal_config cfg;
  cfg.directory = dir.string();
  cfg.mode = mode;
  cfg.initial_map_size = map_size;
  return take(mp::journal::open(std::move(cfg)), "journal::open");
}

// -- flow control -------------------------------------------------------------

// Counts outstanding requests; the submitter blocks while `limit` are in
// flight. Completions run on the journal's completer thread and only count and
// signal: they touch the mutex only when the submitter said it sleeps (the
// seq_cst pair done_/sleeping_ makes sure one side sees the other).
class flow {
 public:
  explicit flow(uint64_t limit) : limit_(limit) {}
  void acquire() {
    wait_until([this] { return issued_ - done_.load() < limit_; });
    ++issued_;
  }
  void release() {
    done_.fetch_add(1);
    if (!sleeping_.load()) return;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      sleeping_.store(false);
    }
    cv_.notify_one();
  }
  void drain() {
    wait_until([this] { return done_.load() == issued_; });
  }

 private:
  template <class Pred>
  void wait_until(Pred pred) {
    if (pred()) return;
    std::unique_lock<std::mutex> guard{mtx_};
    for (;;) {
      sleeping_.store(true);
      if (pred()) break;
      cv_.wait(guard, [&] { return !sleeping_.load(); });
    }
    sleeping_.store(false);
  }
  const uint64_t limit_;
  uint64_t issued_ = 0;  // submitter thread only
  std::atomic<uint64_t> done_{0};
  std::atomic<bool> sleeping_{false};
  std::mutex mtx_;
  std::condition_variable cv_;
};

// -- journal.append -----------------------------------------------------------

struct append_config {
  uint64_t in_flight;
  uint64_t min_events;  // keep going until this many were submitted ...
  double min_seconds;   // ... and this much time passed,
  double max_seconds;   // but never longer than this
  uint64_t max_events;  // or more events than this
};

// One append run: `in_flight` single-event appends kept outstanding,
// round-robin over `stream_count` streams.
class append_run {
 public:
  append_run(mp::journal& j, const append_config& cfg, bool from_callback)
      : journal_(j),
        cfg_(cfg),
        from_callback_(from_callback),
        payload_(make_payload(payload_size)),
        flow_(cfg.in_flight),
        // Slack: in callback mode two threads may pass keep_going() at once.
        submit_ns_(cfg.max_events + cfg.in_flight),
        latency_ns_(cfg.max_events + cfg.in_flight) {
    for (size_t i = 0; i < stream_count; ++i)
      streams_.push_back(stream_name(i));
  }

  void run() {
    auto token =
        journal_.subscribe([this](uint64_t) { commits_.fetch_add(1); });
    t0_ = clock_type::now();
    auto cpu0 = process_cpu_seconds();
    if (from_callback_) {
      for (uint64_t i = 0; i < cfg_.in_flight && keep_going(); ++i) {
        flow_.acquire();
        submit(next_.fetch_add(1));
      }
    } else {
      while (keep_going()) {
        flow_.acquire();
        submit(next_.fetch_add(1));
      }
    }
    // In callback mode a slot is released only when its chain of
    // resubmissions ends, so draining waits for every append either way.
    flow_.drain();
    seconds_ = seconds_since(t0_);
    cpu_seconds_ = process_cpu_seconds() - cpu0;
    auto st = journal_.stats();
    commit_ms_ = static_cast<double>(st.commit_us_sum) / 1000.0 /
                 static_cast<double>(std::max<uint64_t>(1, st.commits));
    journal_.unsubscribe(token);
    if (failures_.load() != 0)
      die(std::to_string(failures_.load()) + " appends failed");
  }

  uint64_t events() const { return completed_.load(); }
  uint64_t commits() const { return commits_.load(); }
  double seconds() const { return seconds_; }
  double cpu_seconds() const { return cpu_seconds_; }
  double commit_ms() const { return commit_ms_; }
  /// Appends the latencies of this run to `out`.
  void add_latencies(std::vector<int64_t>& out) const {
    out.insert(out.end(), latency_ns_.begin(),
               latency_ns_.begin() + static_cast<ptrdiff_t>(events()));
  }

 private:
  bool keep_going() const {
    auto n = next_.load();
    if (n >= cfg_.max_events) return false;
    auto elapsed = seconds_since(t0_);
    if (elapsed >= cfg_.max_seconds) return false;
    return n < cfg_.min_events || elapsed < cfg_.min_seconds;
  }

  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_type::now() - t0_)
        .count();
  }

  void submit(uint64_t i) {
    submit_ns_[i] = now_ns();
    journal_.append(
        streams_[i % stream_count], make_events(payload_, 1),
        mp::expected_version::any(),
        [this, i](mp::expected<mp::append_result> res) { on_done(i, res); });
  }

  // Runs on the journal's completer thread: record, then signal or refill.
  void on_done(uint64_t i, const mp::expected<mp::append_result>& res) {
    if (!res) failures_.fetch_add(1);
    latency_ns_[i] = now_ns() - submit_ns_[i];
    if (from_callback_ && keep_going()) {
      submit(next_.fetch_add(1));
      completed_.fetch_add(1);
      return;
    }
    completed_.fetch_add(1);
    flow_.release();
  }

  mp::journal& journal_;
  append_config cfg_;
  bool from_callback_;
  std::vector<uint8_t> payload_;
  std::vector<std::string> streams_;
  flow flow_;
  std::vector<int64_t> submit_ns_;
  std::vector<int64_t> latency_ns_;
  std::atomic<uint64_t> next_{0};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> failures_{0};
  clock_type::time_point t0_;
  double seconds_ = 0;
  double cpu_seconds_ = 0;
  double commit_ms_ = 0;
};

unsigned lmdb_flags(mp::durability mode) {
  switch (mode) {
    case mp::durability::nometasync:
      return MDB_NOTLS | MDB_NOMETASYNC;
    case mp::durability::nosync:
      return MDB_NOTLS | MDB_NOSYNC;
    default:
      return MDB_NOTLS;
  }
}

// The `p` quantile of `v` in microseconds (reorders `v`).
double percentile_us(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

// The journal and the raw loop run in alternating slices, each raw slice
// writing as many records as the journal slice before it, in batches of
// that slice's mean group commit: both see the disk in the same state,
// which on a shared virtual disk drifts by a third within seconds.
constexpr int append_slices = 4;

json bench_append(const fs::path& base, const options& opt,
                  const append_config& cfg) {
  auto tag =
      std::string{to_string(opt.mode)} + "-" + std::to_string(cfg.in_flight);
  auto dir = base / ("append-" + tag);
  std::cerr << "journal.append " << tag << " ...\n";
  auto slice = cfg;
  slice.min_events /= append_slices;
  slice.max_events /= append_slices;
  slice.min_seconds /= append_slices;
  slice.max_seconds /= append_slices;
  auto record_bytes = record_bytes_for(stream_name(0).size());
  uint64_t events = 0;
  uint64_t commits = 0;
  uint64_t written = 0;
  uint64_t raw_written = 0;
  double seconds = 0;
  double raw_seconds = 0;
  double cpu_seconds = 0;
  double commit_ms = 0;
  std::vector<double> slice_ratios;
  std::vector<int64_t> latencies;
  try {
    auto j = open_journal(dir, opt.mode);
    raw_lmdb::loop raw{base / ("raw-" + tag), lmdb_flags(opt.mode)};
    for (int i = 0; i < append_slices; ++i) {
      auto written0 = process_written_bytes();
      append_run run{*j, slice, opt.submit_from_callback};
      run.run();
      written += process_written_bytes() - written0;
      auto n = run.events();
      auto batch = std::max<uint64_t>(
          1, std::llround(
                 static_cast<double>(n) /
                 static_cast<double>(std::max<uint64_t>(1, run.commits()))));
      auto raw_written0 = process_written_bytes();
      auto raw_secs = raw.run(record_bytes, batch, n);
      raw_written += process_written_bytes() - raw_written0;
      events += n;
      commits += run.commits();
      seconds += run.seconds();
      raw_seconds += raw_secs;
      cpu_seconds += run.cpu_seconds();
      commit_ms = run.commit_ms();  // the journal's mean since it opened
      run.add_latencies(latencies);
      slice_ratios.push_back(raw_secs / run.seconds());
      std::cerr << "  slice " << i + 1 << ": " << n << " events, "
                << run.commits() << " commits, raw LMDB with batches of "
                << batch << ", ratio " << slice_ratios.back() << "\n";
    }
  } catch (const std::exception& e) {
    die(e.what());
  }
  // The raw loop wrote records of the size computed from the layout: check
  // it against what the journal stored.
  auto measured = raw_lmdb::record_bytes(dir);
  if (measured != record_bytes)
    die("the journal stored records of " + std::to_string(measured) +
        " bytes, the bench computed " + std::to_string(record_bytes) +
        ": fix record_bytes_for");
  fs::remove_all(dir);
  auto rate = static_cast<double>(events) / seconds;
  auto raw = static_cast<double>(events) / raw_seconds;
  auto mean_batch = static_cast<double>(events) /
                    static_cast<double>(std::max<uint64_t>(1, commits));
  json out;
  out["bench"] = "journal.append";
  out["durability"] = to_string(opt.mode);
  out["streams"] = stream_count;
  out["in_flight"] = cfg.in_flight;
  out["events"] = events;
  out["events_per_s"] = std::llround(rate);
  out["mean_batch"] = round_to(mean_batch, 1);
  out["raw_lmdb_events_per_s"] = std::llround(raw);
  out["ratio"] = round_to(rate / raw, 3);
  out["slices"] = append_slices;
  out["slice_ratio_min"] =
      round_to(*std::min_element(slice_ratios.begin(), slice_ratios.end()), 3);
  out["slice_ratio_max"] =
      round_to(*std::max_element(slice_ratios.begin(), slice_ratios.end()), 3);
  out["record_bytes"] = record_bytes;
  out["p50_us"] = round_to(percentile_us(latencies, 0.50), 1);
  out["p99_us"] = round_to(percentile_us(latencies, 0.99), 1);
  // Process CPU time per event while the journal ran (all threads: the
  // submitter, the writer and the completions): less sensitive to other
  // load on the machine than events_per_s.
  auto counted = static_cast<double>(std::max<uint64_t>(1, events));
  out["cpu_us_per_event"] = round_to(cpu_seconds * 1e6 / counted, 2);
  // Mean duration of the journal's mdb_txn_commit (page writes + syncs).
  out["commit_ms"] = round_to(commit_ms, 3);
  // Bytes written to the data file per event, by the journal and by the raw
  // loop (same events): what each commit's sync waits for.
  out["written_bytes_per_event"] =
      round_to(static_cast<double>(written) / counted, 1);
  out["raw_written_bytes_per_event"] =
      round_to(static_cast<double>(raw_written) / counted, 1);
  return out;
}

// -- reads --------------------------------------------------------------------

// Appends `total` events, 1000 per append, append i going to `stream_of(i)`,
// with up to 16 appends in flight (nosync: this is set-up, not measured).
template <class StreamOf>
void fill(mp::journal& j, uint64_t total, StreamOf stream_of) {
  constexpr uint64_t per_append = 1000;
  auto payload = make_payload(payload_size);
  flow fl{16};
  std::atomic<uint64_t> failures{0};
  for (uint64_t i = 0; i * per_append < total; ++i) {
    fl.acquire();
    j.append(stream_of(i),
             make_events(payload, std::min(per_append, total - i * per_append)),
             mp::expected_version::any(),
             [&](mp::expected<mp::append_result> res) {
               if (!res) failures.fetch_add(1);
               fl.release();
             });
  }
  fl.drain();
  if (failures.load() != 0) die("filling the journal failed");
}

// Fills a fresh journal with `total` events, then times `read(j, from)`
// calls (each returning at most `read_chunk` decoded envelopes) from the
// first event to the last; `next(last envelope)` gives the next `from`.
template <class StreamOf, class Read, class Next>
json bench_read(const fs::path& dir, const char* bench, uint64_t total,
                StreamOf stream_of, Read read, Next next) {
  std::cerr << bench << ": writing " << total << " events ...\n";
  auto j = open_journal(dir, mp::durability::nosync, uint64_t{2} << 30);
  fill(*j, total, stream_of);
  std::cerr << "  reading ...\n";
  uint64_t from = 1;
  uint64_t events = 0;
  auto cpu0 = thread_cpu_seconds();
  auto t0 = clock_type::now();
  for (;;) {
    auto got = take(read(*j, from), bench);
    if (got.empty()) break;
    events += got.size();
    from = next(got.back());
  }
  auto secs = seconds_since(t0);
  auto cpu_secs = thread_cpu_seconds() - cpu0;
  if (events != total)
    die(std::string{bench} + " read " + std::to_string(events) + " of " +
        std::to_string(total) + " events");
  j.reset();
  fs::remove_all(dir);
  json out;
  out["bench"] = bench;
  out["events"] = events;
  out["events_per_s"] = std::llround(static_cast<double>(events) / secs);
  out["chunk"] = read_chunk;
  out["cpu_events_per_s"] =
      std::llround(static_cast<double>(events) / cpu_secs);
  return out;
}

json bench_replay_stream(const fs::path& base, uint64_t total) {
  const std::string stream = "replay-stream";
  return bench_read(
      base / "replay-stream", "journal.replay_stream", total,
      [&](uint64_t) { return stream; },
      [&](mp::journal& j, uint64_t from) {
        return j.read_stream(stream, from, UINT64_MAX, read_chunk);
      },
      [](const mp::event_envelope& last) { return last.sequence + 1; });
}

json bench_read_all(const fs::path& base, uint64_t total) {
  std::vector<std::string> streams;
  for (size_t i = 0; i < stream_count; ++i) streams.push_back(stream_name(i));
  return bench_read(
      base / "read-all", "journal.read_all", total,
      [&](uint64_t i) { return streams[i % stream_count]; },
      [](mp::journal& j, uint64_t from) {
        return j.read_all(from, read_chunk);
      },
      [](const mp::event_envelope& last) { return last.position + 1; });
}

void make_run_dir(const fs::path& base) {
  std::error_code ec;
  fs::create_directories(base, ec);
  auto pattern = (base / "mnemo-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    die("cannot create a directory under '" + base.string() +
        "': " + std::strerror(errno));
  run_dir = pattern;
}

}  // namespace

int main(int argc, char** argv) {
  auto opt = parse_args(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  make_run_dir(opt.base);
  const auto& dir = run_dir;
  uint64_t scale = opt.quick ? 10 : 1;
  double secs = opt.quick ? 0.5 : 2.0;
  append_config configs[] = {
      {1000, 200000 / scale, secs, 5 * secs, 4000000 / scale},
      {64, 100000 / scale, secs, 5 * secs, 4000000 / scale},
      {1, 0, 1.25 * secs, 1.25 * secs, 1000000 / scale},
  };
  auto wanted = [&](const char* name) {
    return opt.only.empty() || opt.only == name;
  };
  if (wanted("append"))
    for (auto& cfg : configs)
      if (opt.in_flight == 0 || opt.in_flight == cfg.in_flight)
        emit(bench_append(dir, opt, cfg));
  if (wanted("replay_stream")) emit(bench_replay_stream(dir, 100000 / scale));
  if (wanted("read_all")) emit(bench_read_all(dir, 1000000 / scale));
  remove_run_dir();
  return 0;
}
