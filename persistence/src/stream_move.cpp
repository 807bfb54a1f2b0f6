// Moving streams between journals: `export_stream` reads a stream whole,
// `import_stream` checks an export and appends what this journal lacks (an
// append request with `import_info`, journal_appends.cpp), then saves its
// snapshots; `release_stream` marks a stream that moved to another member
// (a delete request, journal_deletes.cpp) and counts the release.
//
// Its tables are `moved_table` (stream -> member) and `journal_table`
// (`release_generation_key`), written by the release in
// apply(delete_request) (journal_deletes.cpp) and read here and by
// head_cache.cpp; the cached heads carry the moved mark
// (`head_record::moved`). Invariant: a moved stream takes no appends and no
// import here.

#include "mnemo/persistence/journal.hpp"

#include <algorithm>
#include <cstdlib>
#include <future>
#include <limits>

#include "journal_impl.hpp"
#include "mnemo/persistence/stream_export.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "record_codec.hpp"
#include "walk_stream.hpp"

namespace mnemo::persistence {

expected<stream_export> journal::export_stream(std::string_view stream) const {
  if (auto err = check_name(stream, "stream id")) return err;
  stream_export result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    head_record head;
    if (auto err = read_head(st, stream, head)) return err;
    if (head.highest == 0)
      return error{errc::not_found,
                   "stream '" + std::string{stream} + "' does not exist"};
    result.head = {std::string{stream}, head.highest, head.deleted_to};
    if (head.deleted_to < head.highest) {
      auto first = head.deleted_to + 1;
      result.events.resize(static_cast<size_t>(head.highest - first + 1));
      msgpack::zone zone;
      auto err = walk_stream(
          st, stream, head, first, head.highest,
          [&](uint64_t seq, uint64_t pos, std::string_view rec) {
            return decode_event(rec, record_origin{stream, seq, pos}, zone,
                                result.events[seq - first]);
          });
      if (err) return err;
    }
    // Newest first, then put in order.
    read_txn txn{st};
    auto criteria = snapshot_criteria::latest();
    for (;;) {
      auto snap = snapshot_store::load_in(txn, stream, criteria);
      if (!snap) return snap.error();
      if (!*snap) break;
      auto seq = (*snap)->meta.sequence;
      result.snapshots.push_back(std::move(**snap));
      if (seq == 0) break;
      criteria.max_sequence = seq - 1;
    }
    std::reverse(result.snapshots.begin(), result.snapshots.end());
    return {};
  });
  if (err) return err;
  return result;
}

error journal::import_stream(const stream_export& ex) {
  auto& stream = ex.head.stream_id;
  if (auto err = check_name(stream, "stream id")) return err;
  auto bad = [&](const std::string& why) {
    return error{errc::invalid_argument,
                 "cannot import stream '" + stream + "': " + why};
  };
  auto& head = ex.head;
  if (head.highest_sequence == 0 || head.deleted_to > head.highest_sequence)
    return bad("its head (highest " + std::to_string(head.highest_sequence) +
               ", deleted to " + std::to_string(head.deleted_to) +
               ") is not a stream's");
  if (ex.events.size() != head.highest_sequence - head.deleted_to)
    return bad("it has " + std::to_string(ex.events.size()) +
               " events, its head says " +
               std::to_string(head.highest_sequence - head.deleted_to));
  for (size_t i = 0; i < ex.events.size(); ++i) {
    auto& e = ex.events[i];
    if (e.stream_id != stream || e.sequence != head.deleted_to + i + 1 ||
        e.id.is_nil())
      return bad("event " + std::to_string(i + 1) + " of the export is " +
                 e.stream_id + "/" + std::to_string(e.sequence) +
                 (e.id.is_nil() ? " without an id" : "") + ", expected " +
                 stream + "/" + std::to_string(head.deleted_to + i + 1));
  }
  for (auto& snap : ex.snapshots)
    if (snap.meta.stream_id != stream ||
        snap.meta.sequence > head.highest_sequence)
      return bad("a snapshot belongs to " + snap.meta.stream_id + "/" +
                 std::to_string(snap.meta.sequence));
  // What this journal has of the stream already (an earlier import of an
  // older export): the export must extend it, event id by event id.
  auto moved = moved_to(stream);
  if (!moved) return std::move(moved).error();
  if (*moved)
    return error{errc::stream_moved, "cannot import stream '" + stream +
                                         "': it moved from here to member '" +
                                         **moved +
                                         "' before; moving it back is not "
                                         "supported"};
  auto here = head_of(stream);
  if (!here) return std::move(here).error();
  auto have = here->highest_sequence;
  auto conflict = [&](const std::string& why) {
    return error{errc::version_conflict,
                 "cannot import stream '" + stream + "': " + why};
  };
  if (have > head.highest_sequence)
    return conflict("this journal has version " + std::to_string(have) +
                    ", newer than the export's " +
                    std::to_string(head.highest_sequence));
  if (have > 0 && have < head.deleted_to)
    return conflict("the export lacks events " + std::to_string(have + 1) +
                    ".." + std::to_string(head.deleted_to) +
                    " (deleted at the source) that follow this journal's " +
                    "version " + std::to_string(have));
  if (have > 0) {
    auto mine = read_stream(stream, head.deleted_to + 1, have, UINT64_MAX);
    if (!mine) return std::move(mine).error();
    for (auto& e : *mine)
      if (e.id != ex.events[e.sequence - head.deleted_to - 1].id)
        return conflict("this journal has other events (sequence " +
                        std::to_string(e.sequence) + " differs)");
  }
  auto first = std::max(have, head.deleted_to) + 1;
  if (have == 0 || first <= head.highest_sequence) {
    auto info = std::make_unique<import_info>();
    info->expect = have;
    info->first = first;
    info->deleted_to = head.deleted_to;
    info->highest = head.highest_sequence;
    std::vector<new_event> events;
    for (auto i = first - head.deleted_to - 1; i < ex.events.size(); ++i) {
      auto& e = ex.events[i];
      info->timestamps.push_back(e.timestamp_us);
      events.push_back(new_event{e.id, e.type, e.schema_version, e.payload,
                                 e.correlation_id, e.causation_id, e.tags,
                                 e.metadata});
    }
    if (auto err = import_events(stream, std::move(info), events)) return err;
  }
  // Snapshots in a second commit: saving one again overwrites it, so a
  // repeated import completes an interrupted one.
  if (ex.snapshots.empty()) return {};
  return write([&ex](write_txn& txn) {
    for (auto& snap : ex.snapshots)
      if (auto err = snapshot_store::save_in(txn, snap)) return err;
    return error{};
  });
}

error journal::import_events(const std::string& stream,
                             std::unique_ptr<import_info> info,
                             std::vector<new_event>& events) {
  append_request req;
  req.stream = stream;
  req.import = std::move(info);
  if (auto err = prepare_append(req, events)) return err;
  std::promise<error> promise;
  auto future = promise.get_future();
  req.done = [&promise](expected<append_result> res) {
    promise.set_value(res ? error{} : std::move(res).error());
  };
  impl_->enqueue(std::move(req));
  return future.get();
}

error journal::release_stream(std::string stream, std::string destination) {
  if (auto err = check_name(stream, "stream id")) return err;
  if (auto err = check_name(destination, "member id")) return err;
  // A release deletes the stream's events, which in a replicated cluster
  // are records of their shard's log (see delete_events_to): such streams
  // move with their shard's replica set, never one by one.
  if (impl_->cfg.shard_of)
    if (auto shard = impl_->cfg.shard_of(stream))
      return error{errc::invalid_argument,
                   "cannot release stream '" + stream +
                       "': it belongs to shard " + std::to_string(*shard) +
                       ", whose log is replicated whole; it moves with the "
                       "shard's replica set"};
  return blocking([&](write_handler done) {
    impl_->enqueue(delete_request{std::move(stream),
                                  std::numeric_limits<uint64_t>::max(),
                                  std::move(done), std::move(destination)});
  });
}

expected<std::optional<std::string>> journal::moved_to(
    std::string_view stream) const {
  expected<std::optional<std::string>> result{std::nullopt};
  auto err = read([&](read_txn& txn) {
    result = table_store::get_in(txn, moved_table, stream);
    return error{};
  });
  if (err) return err;
  return result;
}

expected<uint64_t> journal::release_generation() const {
  expected<std::optional<std::string>> value{std::nullopt};
  auto err = read([&](read_txn& txn) {
    value = table_store::get_in(txn, journal_table, release_generation_key);
    return error{};
  });
  if (err) return err;
  if (!value) return std::move(value).error();
  return *value ? uint64_t{std::strtoull((*value)->c_str(), nullptr, 10)}
                : uint64_t{0};
}

int journal::impl::moved_error(detail::txn_state& st, const std::string& stream,
                               outcome& out) {
  write_txn txn{st};
  auto to = table_store::get_in(txn, moved_table, stream);
  if (st.fatal_rc != 0) return st.fatal_rc;
  std::string member = to && *to ? **to : std::string{"?"};
  out = error{errc::stream_moved, "stream '" + stream + "' moved to member '" +
                                      member +
                                      "' and takes no appends on this node"};
  return 0;
}

}  // namespace mnemo::persistence
