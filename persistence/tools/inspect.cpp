// mnemo-inspect: prints the contents of a mnemo data directory as JSON lines,
// one object per line. Opens the journal read-only through the public API and
// reads in bounded batches, so it may run next to a live node and on journals
// of any size. The output format is described in docs/format.md.

#include <charconv>
#include <cstdint>
#include <exception>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mnemo/persistence/dead_letter_store.hpp"
#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/persistence/table_store.hpp"

namespace {

namespace mp = mnemo::persistence;

// Keeps the documented field order in every printed object.
using json = nlohmann::ordered_json;

constexpr int exit_error = 1;
constexpr int exit_usage = 2;

// Events, streams or snapshots per read call: bounds memory and the length
// of each read transaction.
constexpr uint64_t batch_size = 1000;

constexpr uint64_t unlimited = std::numeric_limits<uint64_t>::max();

constexpr const char* usage_text = R"(usage:
  mnemo-inspect DATA_DIR streams
  mnemo-inspect DATA_DIR stream STREAM_ID [--from SEQ] [--to SEQ] [--max N]
  mnemo-inspect DATA_DIR log [--from POSITION] [--max N]
  mnemo-inspect DATA_DIR tag TAG [--from POSITION] [--max N]
  mnemo-inspect DATA_DIR snapshots [STREAM_ID] [--payload]
  mnemo-inspect DATA_DIR offsets
  mnemo-inspect DATA_DIR tables
  mnemo-inspect DATA_DIR table NAME [--max N]
  mnemo-inspect DATA_DIR dead-letters PROJECTION [--from POSITION] [--max N]
  mnemo-inspect DATA_DIR info
  mnemo-inspect --help

Prints the contents of a mnemo data directory (opened read-only) as JSON
lines, one object per stream, event, snapshot, offset, read-model table or
row, or dead letter.
Exit status: 0 on success, 1 if the directory cannot be read, 2 on bad usage.
)";

class inspector;

/// A command: the operands and options it accepts, and what runs it.
struct command_spec {
  std::string_view name;
  size_t min_operands;
  size_t max_operands;
  bool from;
  bool to;
  bool max;
  bool payload;
  mp::error (inspector::*run)();
};

/// The parsed command line.
struct options {
  bool help = false;
  std::string directory;
  std::string command;
  const command_spec* spec = nullptr;
  std::vector<std::string> operands;
  std::optional<uint64_t> from;
  std::optional<uint64_t> to;
  std::optional<uint64_t> max;
  bool payload = false;
};

// Parses a decimal unsigned number; returns nothing on bad input.
std::optional<uint64_t> parse_number(std::string_view text) {
  uint64_t result = 0;
  auto last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), last, result);
  if (text.empty() || ec != std::errc{} || ptr != last) return std::nullopt;
  return result;
}

// Returns `bytes` as lower-case hexadecimal.
std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  result.reserve(bytes.size() * 2);
  for (auto c : bytes) {
    auto b = static_cast<uint8_t>(c);
    result.push_back(digits[b >> 4]);
    result.push_back(digits[b & 0x0f]);
  }
  return result;
}

/// Prints the contents of one opened journal to standard output, one JSON
/// object per line. Each command returns the first read error.
class inspector {
 public:
  inspector(std::unique_ptr<mp::journal> j, const options& opts)
      : journal_(std::move(j)), opts_(opts) {}

  /// Prints the global log from `--from` (position), up to `--max` events.
  mp::error log() {
    return print_events(opts_.from.value_or(0), &mp::event_envelope::position,
                        [this](uint64_t from, uint64_t n) {
                          return journal_->read_all(from, n);
                        });
  }

  /// Prints the events tagged TAG from `--from` (position), up to `--max`.
  mp::error tag() {
    auto& name = opts_.operands[0];
    return print_events(opts_.from.value_or(0), &mp::event_envelope::position,
                        [this, &name](uint64_t from, uint64_t n) {
                          return journal_->read_tag(name, from, n);
                        });
  }

  /// Prints the events of STREAM_ID in `--from`..`--to`, up to `--max`.
  mp::error stream() {
    auto& id = opts_.operands[0];
    auto to = opts_.to.value_or(unlimited);
    return print_events(opts_.from.value_or(1), &mp::event_envelope::sequence,
                        [this, &id, to](uint64_t from, uint64_t n) {
                          return journal_->read_stream(id, from, to, n);
                        });
  }

  /// Prints the head of every stream, in stream id byte order.
  mp::error streams() {
    return for_each_stream([](const mp::stream_head& head) {
      print(json{{"stream", head.stream_id},
                 {"highest_sequence", head.highest_sequence},
                 {"deleted_to", head.deleted_to}});
    });
  }

  /// Prints the snapshots of STREAM_ID or of all streams; with --payload
  /// also their type, metadata and decoded state.
  mp::error snapshots() {
    auto& store = journal_->snapshots();
    if (!opts_.operands.empty()) {
      auto all = store.list(opts_.operands[0]);
      if (!all) return all.error();
      for (auto& meta : *all)
        if (auto err = print_snapshot(meta)) return err;
      return {};
    }
    std::string after_stream;
    uint64_t after_sequence = 0;
    for (;;) {
      auto batch = store.list_all(after_stream, after_sequence, batch_size);
      if (!batch) return batch.error();
      for (auto& meta : *batch)
        if (auto err = print_snapshot(meta)) return err;
      if (batch->size() < batch_size) return {};
      after_stream = batch->back().stream_id;
      after_sequence = batch->back().sequence;
    }
  }

  /// Prints every projection offset, in name order.
  mp::error offsets() {
    auto all = journal_->offsets().list();
    if (!all) return all.error();
    for (auto& [name, position] : *all)
      print(json{{"name", name}, {"position", position}});
    return {};
  }

  /// Prints every read-model table (and index) with its row count.
  mp::error tables() {
    return journal_->read([](mp::read_txn& txn) {
      auto names = mp::table_store::tables_in(txn);
      if (!names) return names.error();
      for (auto& name : *names) {
        auto rows = mp::table_store::count_in(txn, name);
        if (!rows) return rows.error();
        print(
            json{{"table", mp::table_store::printable(name)}, {"rows", *rows}});
      }
      return mp::error{};
    });
  }

  /// Prints the rows of table NAME in key order, up to `--max`: the key
  /// (printable and hex) and the value decoded from msgpack to JSON.
  mp::error table() {
    auto& name = opts_.operands[0];
    return journal_->read([&](mp::read_txn& txn) {
      auto visited = mp::table_store::scan_prefix_in(
          txn, name, {}, opts_.max.value_or(unlimited),
          [&](std::string_view key, std::string_view value) {
            json line{{"key", mp::table_store::printable(key)},
                      {"key_hex", to_hex(key)}};
            mp::event_envelope env;
            env.stream_id = name;
            env.type = "table";
            env.payload.assign(value.begin(), value.end());
            add_payload(line, env);
            line["value"] = line["payload"];
            line.erase("payload");
            print(line);
            return true;
          });
      return visited ? mp::error{} : visited.error();
    });
  }

  /// Prints the dead letters of PROJECTION from `--from` (position).
  mp::error dead_letters() {
    auto& projection = opts_.operands[0];
    auto from = opts_.from.value_or(0);
    auto remaining = opts_.max.value_or(unlimited);
    while (remaining > 0) {
      auto n = std::min(remaining, batch_size);
      auto batch = journal_->dead_letters().list(projection, from, n);
      if (!batch) return batch.error();
      for (auto& d : *batch)
        print(json{{"projection", d.projection},
                   {"position", d.position},
                   {"stream", d.stream_id},
                   {"sequence", d.sequence},
                   {"type", d.event_type},
                   {"error", d.error},
                   {"attempts", d.attempts},
                   {"parked_at_ms", d.parked_at_ms}});
      if (batch->size() < n) return {};
      remaining -= batch->size();
      from = batch->back().position + 1;
    }
    return {};
  }

  /// Prints the format version, head position, stream count and map size.
  mp::error info() {
    uint64_t streams = 0;
    if (auto err = for_each_stream([&](const mp::stream_head&) { ++streams; }))
      return err;
    print(json{{"format_version", journal_->format_version()},
               {"head_position", journal_->head_position()},
               {"streams", streams},
               {"map_size", journal_->map_size()}});
    return {};
  }

 private:
  static void print(const json& line) {
    // Stored strings need not be UTF-8; print them rather than fail.
    std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace)
              << '\n';
  }

  // Adds the decoded payload, or the decode error and the raw bytes.
  void add_payload(json& line, const mp::event_envelope& env) const {
    auto decoded = registry_.payload_json(env);
    if (decoded) {
      line["payload"] = json(*decoded);
    } else {
      line["payload_error"] = decoded.error().message();
      line["payload_hex"] =
          to_hex({reinterpret_cast<const char*>(env.payload.data()),
                  env.payload.size()});
    }
  }

  void print_event(const mp::event_envelope& env) const {
    json line;
    line["id"] = env.id.to_string();
    line["stream"] = env.stream_id;
    line["sequence"] = env.sequence;
    line["position"] = env.position;
    line["type"] = env.type;
    line["schema_version"] = env.schema_version;
    line["timestamp_us"] = env.timestamp_us;
    line["correlation_id"] = env.correlation_id;
    line["causation_id"] = env.causation_id;
    line["tags"] = env.tags;
    line["metadata"] = env.metadata;
    add_payload(line, env);
    print(line);
  }

  // Prints events from `read(from, n)` batches, continuing after the last
  // event's `key` (position or sequence), until a short batch or `--max`.
  template <class Read>
  mp::error print_events(uint64_t from, uint64_t mp::event_envelope::*key,
                         Read&& read) const {
    auto remaining = opts_.max.value_or(unlimited);
    while (remaining > 0) {
      auto n = std::min(remaining, batch_size);
      mp::expected<std::vector<mp::event_envelope>> batch = read(from, n);
      if (!batch) return batch.error();
      for (auto& env : *batch) print_event(env);
      if (batch->size() < n || batch->back().*key == unlimited) return {};
      remaining -= batch->size();
      from = batch->back().*key + 1;
    }
    return {};
  }

  // Calls `f(head)` for every stream, in batches.
  template <class F>
  mp::error for_each_stream(F&& f) const {
    std::string after;
    for (;;) {
      auto batch = journal_->list_streams(after, batch_size);
      if (!batch) return batch.error();
      for (auto& head : *batch) f(head);
      if (batch->size() < batch_size) return {};
      after = batch->back().stream_id;
    }
  }

  // Prints one snapshot line; with --payload loads and decodes the state.
  mp::error print_snapshot(const mp::snapshot_metadata& meta) {
    json line{{"stream", meta.stream_id},
              {"sequence", meta.sequence},
              {"timestamp_us", meta.timestamp_us}};
    if (opts_.payload) {
      mp::snapshot_criteria exact;
      exact.min_sequence = exact.max_sequence = meta.sequence;
      auto snap = journal_->snapshots().load(meta.stream_id, exact);
      if (!snap) return snap.error();
      if (!*snap) return {};  // Removed by a live writer since it was listed.
      auto& s = **snap;
      line["type"] = s.type;
      line["schema_version"] = s.schema_version;
      line["metadata"] = s.metadata;
      mp::event_envelope env;
      env.stream_id = s.meta.stream_id;
      env.sequence = s.meta.sequence;
      env.type = s.type;
      env.schema_version = s.schema_version;
      env.payload = std::move(s.payload);
      add_payload(line, env);
    }
    print(line);
    return {};
  }

  std::unique_ptr<mp::journal> journal_;
  const options& opts_;
  // Empty: payloads are printed as stored, whatever their type.
  mp::event_registry registry_;
};

constexpr command_spec commands[] = {
    {"streams", 0, 0, false, false, false, false, &inspector::streams},
    {"stream", 1, 1, true, true, true, false, &inspector::stream},
    {"log", 0, 0, true, false, true, false, &inspector::log},
    {"tag", 1, 1, true, false, true, false, &inspector::tag},
    {"snapshots", 0, 1, false, false, false, true, &inspector::snapshots},
    {"offsets", 0, 0, false, false, false, false, &inspector::offsets},
    {"tables", 0, 0, false, false, false, false, &inspector::tables},
    {"table", 1, 1, false, false, true, false, &inspector::table},
    {"dead-letters", 1, 1, true, false, true, false, &inspector::dead_letters},
    {"info", 0, 0, false, false, false, false, &inspector::info},
};

// Looks up the command and checks its operands and options; returns an error
// text, empty if the command line is valid.
std::string check_command(options& opts) {
  for (auto& spec : commands) {
    if (spec.name != opts.command) continue;
    auto n = opts.operands.size();
    if (n < spec.min_operands || n > spec.max_operands)
      return "wrong number of arguments for '" + opts.command + "'";
    const char* bad = opts.from && !spec.from         ? "--from"
                      : opts.to && !spec.to           ? "--to"
                      : opts.max && !spec.max         ? "--max"
                      : opts.payload && !spec.payload ? "--payload"
                                                      : nullptr;
    if (bad != nullptr)
      return std::string{bad} + " is not valid for '" + opts.command + "'";
    opts.spec = &spec;
    return {};
  }
  return "unknown command '" + opts.command + "'";
}

// Parses `argv` into `opts`; returns an error text, empty on success.
std::string parse_args(int argc, char** argv, options& opts) {
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg{argv[i]};
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      return {};
    }
    if (arg == "--payload") {
      opts.payload = true;
    } else if (arg == "--from" || arg == "--to" || arg == "--max") {
      if (i + 1 == argc) return std::string{arg} + " needs a number";
      auto value = parse_number(argv[++i]);
      if (!value)
        return std::string{arg} + " needs a decimal number, got '" + argv[i] +
               "'";
      auto& slot = arg == "--from" ? opts.from
                   : arg == "--to" ? opts.to
                                   : opts.max;
      slot = *value;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return "unknown option '" + std::string{arg} + "'";
    } else {
      words.emplace_back(arg);
    }
  }
  if (words.size() < 2)
    return "missing " + std::string{words.empty() ? "DATA_DIR" : "command"};
  opts.directory = words[0];
  opts.command = words[1];
  opts.operands.assign(words.begin() + 2, words.end());
  return check_command(opts);
}

// Prints `err` as one line that names the data directory.
int fail(const std::string& directory, const mp::error& err) {
  // Open errors quote the path already; read errors name only the record.
  auto quoted = "'" + directory + "'";
  auto text = err.to_string();
  if (text.find(quoted) == std::string::npos)
    text += " (data directory " + quoted + ")";
  std::cerr << "mnemo-inspect: " << text << '\n';
  return exit_error;
}

int run(int argc, char** argv) {
  options opts;
  if (auto problem = parse_args(argc, argv, opts); !problem.empty()) {
    std::cerr << "mnemo-inspect: " << problem << "\n\n" << usage_text;
    return exit_usage;
  }
  if (opts.help) {
    std::cout << usage_text;
    return 0;
  }
  mp::journal_config cfg;
  cfg.directory = opts.directory;
  cfg.read_only = true;
  auto opened = mp::journal::open(cfg);
  if (!opened) return fail(opts.directory, opened.error());
  inspector ins{std::move(opened).value(), opts};
  auto err = (ins.*opts.spec->run)();
  std::cout.flush();
  if (err) return fail(opts.directory, err);
  if (!std::cout) {
    std::cerr << "mnemo-inspect: cannot write to standard output\n";
    return exit_error;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mnemo-inspect: " << e.what() << '\n';
    return exit_error;
  }
}
