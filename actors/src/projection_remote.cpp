// The remote source of the projection actor: batches of another member's
// journal, pulled through the cluster endpoint (journal_feed.hpp).

#include "projection_actor.hpp"

namespace mnemo::actors::detail {

// Pulls the next batch from the source member through the cluster
// endpoint. Counts as the one operation in flight (management waits).
void projection_actor::fetch() {
  busy_ = true;
  auto max = std::max<size_t>(spec_.options.batch_size, 1);
  request(ctx_.cluster->endpoint(), caf::infinite,
          runtime::feed_pull_atom::value, spec_.source, offset_ + 1,
          static_cast<uint64_t>(max))
      .then([this](runtime::feed_batch_ptr& batch) { fetched(*batch); },
            [this](caf::error& err) { fetch_failed(err); });
}

void projection_actor::fetched(const runtime::feed_batch& batch) {
  busy_ = false;
  available_ = true;
  fetch_failures_ = 0;
  if (attempts_ == 0) last_error_.clear();
  on_remote_head(batch.head);
  if (!batch.events.empty()) return handle_batch(batch.events);
  run_deferred();
}

// A head of the source member (notification or batch). One below the
// offset means its journal lost events this projection has handled (a new
// data directory, or a crash under a non-sync durability mode): say so,
// since the events it writes next at those positions would be skipped.
void projection_actor::on_remote_head(uint64_t head) {
  if (head != 0 && head < offset_ && attempts_ == 0)
    last_error_ = "source '" + spec_.source + "' reports head " +
                  std::to_string(head) + ", below this projection's offset " +
                  std::to_string(offset_) +
                  ": its journal lost events; reset or rebuild";
  on_head(head);
}

// The source is away or answered garbage: wait for its next head
// notification (it comes when the member rejoins), or retry with backoff.
void projection_actor::fetch_failed(const caf::error& err) {
  busy_ = false;
  available_ = false;
  last_error_ = "source '" + spec_.source + "': " + runtime::describe(err);
  ++fetch_failures_;
  if (!refetch_pending_) {
    refetch_pending_ = true;
    delayed_send(
        this,
        runtime::backoff_delay(spec_.options.retry_backoff, fetch_failures_),
        refetch_atom::value);
  }
  run_deferred();
}

}  // namespace mnemo::actors::detail
