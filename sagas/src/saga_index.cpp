#include "mnemo/sagas/saga_index.hpp"

#include <tuple>

#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/persistence/read_model.hpp"
#include "mnemo/sagas/saga_events.hpp"
#include "mnemo/sagas/saga_progress.hpp"

namespace mnemo::sagas {

namespace {

namespace mp = persistence;

using entry_key = std::pair<std::string, std::string>;  // type, id
using phase_key = std::tuple<std::string, uint8_t, std::string>;
using count_key = std::pair<std::string, uint8_t>;  // type, phase

// The tables are handles (names only); building them is cheap.
struct tables {
  mp::table<entry_key, saga_entry> entries{"mnemo.sagas"};
  mp::table<phase_key, uint8_t> by_phase{"mnemo.sagas.by_phase"};
  mp::table<count_key, uint64_t> counts{"mnemo.sagas.counts"};
};

const tables& the_tables() {
  static const tables t;
  return t;
}

mp::error add_count(mp::write_txn& txn, const std::string& type, uint8_t phase,
                    int64_t delta) {
  auto& t = the_tables();
  auto current = t.counts.get(txn, {type, phase});
  if (!current) return current.error();
  auto next = static_cast<int64_t>(current->value_or(0)) + delta;
  if (next <= 0) {
    auto erased = t.counts.erase(txn, {type, phase});
    return erased ? mp::error{} : erased.error();
  }
  return t.counts.put(txn, {type, phase}, static_cast<uint64_t>(next));
}

}  // namespace

bool parse_saga_stream(const std::string& stream, std::string& type,
                       std::string& id) {
  static const std::string prefix = "saga-";
  if (stream.compare(0, prefix.size(), prefix) != 0) return false;
  auto dash = stream.find('-', prefix.size());
  if (dash == std::string::npos || dash == prefix.size() ||
      dash + 1 == stream.size())
    return false;
  type = stream.substr(prefix.size(), dash - prefix.size());
  id = stream.substr(dash + 1);
  return true;
}

saga_index::saga_index(const persistence::event_registry& types)
    : types_(&types) {}

actors::projection_spec saga_index::projection() const {
  actors::projection_spec spec;
  spec.name = projection_name;
  spec.filter.stream_prefix = "saga-";
  spec.apply = [self = *this](mp::write_txn& txn,
                              const mp::event_envelope& env) {
    return self.apply(txn, env);
  };
  spec.clear = [self = *this](mp::write_txn& txn) { return self.clear(txn); };
  return spec;
}

mp::error saga_index::apply(mp::write_txn& txn,
                            const mp::event_envelope& env) const {
  std::string type;
  std::string id;
  if (!parse_saga_stream(env.stream_id, type, id)) return {};
  // A snapshot in a log that carries them (a shard's) changes no phase.
  if (env.type == saga_snapshot_type) return {};
  actors::variant_codec<saga_event> codec{*types_};
  auto ev = codec.decode(env);
  if (!ev) return ev.error();
  auto& t = the_tables();
  auto old = t.entries.get(txn, {type, id});
  if (!old) return old.error();
  saga_entry entry;
  if (*old) {
    entry = **old;
  } else {
    entry.type = type;
    entry.id = id;
    entry.started_ms = env.timestamp_us / 1000;
  }
  // Fold with the saga's own logic, from the fields the index keeps.
  saga_progress progress;
  progress.phase = entry.phase();
  progress.step = entry.step;
  progress.attempt = entry.attempt;
  progress.error = entry.error;
  progress.apply(*ev);
  bool existed = old->has_value();
  uint8_t before = entry.phase_code;
  entry.phase_code = static_cast<uint8_t>(progress.phase);
  entry.step = progress.step;
  entry.attempt = progress.attempt;
  entry.error = progress.error;
  entry.updated_ms = env.timestamp_us / 1000;
  entry.position = env.position;
  if (!existed || before != entry.phase_code) {
    if (existed) {
      auto erased = t.by_phase.erase(txn, {type, before, id});
      if (!erased) return erased.error();
      if (auto err = add_count(txn, type, before, -1)) return err;
    }
    if (auto err = t.by_phase.put(txn, {type, entry.phase_code, id}, 0))
      return err;
    if (auto err = add_count(txn, type, entry.phase_code, 1)) return err;
  }
  return t.entries.put(txn, {type, id}, entry);
}

mp::error saga_index::clear(mp::write_txn& txn) const {
  auto& t = the_tables();
  auto a = t.entries.clear(txn);
  if (!a) return a.error();
  auto b = t.by_phase.clear(txn);
  if (!b) return b.error();
  auto c = t.counts.clear(txn);
  return c ? mp::error{} : c.error();
}

mp::expected<std::optional<saga_entry>> saga_index::get(
    const mp::journal& j, const std::string& type,
    const std::string& id) const {
  std::optional<saga_entry> result;
  auto err = j.read([&](mp::read_txn& txn) {
    auto row = the_tables().entries.get(txn, {type, id});
    if (!row) return row.error();
    result = std::move(*row);
    return mp::error{};
  });
  if (err) return err;
  return result;
}

mp::expected<std::vector<saga_entry>> saga_index::list(const mp::journal& j,
                                                       const std::string& type,
                                                       saga_phase phase,
                                                       const std::string& after,
                                                       size_t limit) const {
  std::vector<saga_entry> result;
  if (limit == 0) return result;
  auto code = static_cast<uint8_t>(phase);
  auto err = j.read([&](mp::read_txn& txn) {
    auto& t = the_tables();
    std::vector<std::string> ids;
    mp::error inner;
    auto visited = t.by_phase.range(
        txn, phase_key{type, code, after}, std::nullopt,
        mp::table_store::unlimited, [&](const phase_key& k, const uint8_t&) {
          if (std::get<0>(k) != type || std::get<1>(k) != code) return false;
          if (std::get<2>(k) == after) return true;  // the page's anchor
          ids.push_back(std::get<2>(k));
          return ids.size() < limit;
        });
    if (!visited) return visited.error();
    for (auto& id : ids) {
      auto row = t.entries.get(txn, {type, id});
      if (!row) return row.error();
      if (!*row)
        return mp::error{mp::errc::corrupt_record,
                         "saga index lists '" + type + "-" + id +
                             "' without an entry; rebuild projection " +
                             projection_name};
      result.push_back(std::move(**row));
    }
    return mp::error{};
  });
  if (err) return err;
  return result;
}

mp::expected<std::map<std::string, uint64_t>> saga_index::counts(
    const mp::journal& j, const std::string& type) const {
  std::map<std::string, uint64_t> result;
  auto err = j.read([&](mp::read_txn& txn) {
    auto visited = the_tables().counts.scan_prefix(
        txn, type, mp::table_store::unlimited,
        [&](const count_key& k, const uint64_t& n) {
          result[to_string(static_cast<saga_phase>(k.second))] = n;
          return true;
        });
    return visited ? mp::error{} : visited.error();
  });
  if (err) return err;
  return result;
}

}  // namespace mnemo::sagas
