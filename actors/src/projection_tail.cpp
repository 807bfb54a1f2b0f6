#include "projection_tail.hpp"

namespace mnemo::actors::detail {

namespace {

// Runs on the writer thread inside the tail write's transaction: applies
// the events after `offset` that this transaction sees and stores the new
// offset with them, or rolls all of it back if a handler fails.
persistence::error apply_tail(tail_chain& chain, uint64_t offset,
                              tail_outcome& out, persistence::write_txn& txn) {
  // A retried commit (full map) runs this again from scratch.
  out = tail_outcome{};
  // Another instance of the projection (started while this one's write
  // was in flight) got there first: handle nothing twice.
  auto stored = persistence::offset_store::load_in(txn, chain.name);
  if (!stored) return stored.error();
  if (*stored != offset)
    return persistence::error{persistence::errc::version_conflict,
                              "projection '" + chain.name + "': offset " +
                                  std::to_string(*stored) + " stored, not " +
                                  std::to_string(offset) +
                                  ": another instance wrote it"};
  // Only the events of the filter's streams are decoded; the others are
  // verified and counted as handled.
  auto batch = persistence::journal::read_all_in(
      txn, offset + 1, chain.batch_size, chain.filter.stream_prefix);
  if (!batch) return batch.error();
  if (batch->scanned == 0) return {};
  auto& events = batch->events;
  if (auto err = apply_events(txn, events, chain.apply, chain.filter, false,
                              out.failed)) {
    if (out.failed) out.batch = std::move(events);
    return err;
  }
  auto last = batch->last_position;
  if (auto err = persistence::offset_store::store_in(txn, chain.name, last))
    return err;
  out.handled = batch->scanned;
  out.last = last;
  return {};
}

}  // namespace

void submit_tail(const tail_chain_ptr& chain, uint64_t offset) {
  auto out = std::make_shared<tail_outcome>();
  auto fn = [chain, offset, out](persistence::write_txn& txn) {
    return apply_tail(*chain, offset, *out, txn);
  };
  auto done = [chain, out](persistence::error err) {
    out->err = std::move(err);
    if (out->err) out->handled = 0;
    // Only a tail write that handled events, but not a full batch (a
    // backlog, read off the writer thread instead), continues the chain: an
    // idle journal must not keep the writer busy.
    out->more = out->handled > 0 && !chain->stop.load() &&
                !chain->ends_each_write &&
                !(chain->ends_when_full && out->handled == chain->batch_size);
    auto next = out->last;
    auto more = out->more;
    {
      std::lock_guard<std::mutex> guard{chain->mtx};
      chain->done.push_back(std::move(*out));
    }
    if (more) chain->sink->expect();
    chain->sink->post(
        [owner = chain->owner] { caf::anon_send(owner, tail_atom::value); });
    // Queued before the writer takes its next batch: the next commit's
    // events are handled in that commit.
    if (more) submit_tail(chain, next);
  };
  chain->journal->write_after_appends(std::move(fn), std::move(done));
}

}  // namespace mnemo::actors::detail
