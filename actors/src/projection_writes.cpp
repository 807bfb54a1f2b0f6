// The handling of a projection's batches and its queue of writes
// (projection_writes.hpp).

#include "projection_writes.hpp"

#include <caf/send.hpp>

namespace mnemo::actors::detail {

std::pair<size_t, std::string> batch_handling::before_write(
    const envelopes& batch) const {
  if (!effect_) return {batch.size(), {}};
  envelopes pending;
  std::vector<size_t> index;  // positions in `batch` of `pending`
  for (size_t i = 0; i <= batch.size(); ++i) {
    bool last = i == batch.size();
    if (!last && filter_.matches(batch[i])) {
      pending.push_back(batch[i]);
      index.push_back(i);
    }
    if (pending.empty() || (pending.size() < group_size_ && !last)) continue;
    if (auto err = guarded([&] { return effect_(pending); })) {
      // Find the culprit one event at a time (repeats are allowed).
      for (size_t j = 0; j < pending.size(); ++j) {
        envelopes one{pending[j]};
        if (auto e = guarded([&] { return effect_(one); }))
          return {index[j], e.message()};
      }
    }
    pending.clear();
    index.clear();
  }
  return {batch.size(), {}};
}

std::string batch_handling::retry_before(
    const persistence::event_envelope& env) const {
  if (!effect_) return {};
  if (auto err = guarded([&] { return effect_({env}); })) return err.message();
  return {};
}

void write_queue::submit(const caf::actor& self, persistence::write_function fn,
                         outcome_slot slot, std::optional<uint64_t> last,
                         done_fn done) {
  sink_->expect();
  auto* sink = sink_;
  journal_->write(std::move(fn), [slot, sink, self](persistence::error err) {
    if (!slot->outcome) slot->outcome.emplace();
    slot->outcome->err = std::move(err);
    slot->done.store(true, std::memory_order_release);
    sink->post([self] { caf::anon_send(self, written_atom::value); });
  });
  if (last) ++batches_;
  writes_.push_back(pending{std::move(slot), last, std::move(done)});
}

void write_queue::drain() {
  while (!writes_.empty() &&
         writes_.front().slot->done.load(std::memory_order_acquire)) {
    auto w = std::move(writes_.front());
    writes_.pop_front();
    if (w.last) --batches_;
    w.done(std::move(*w.slot->outcome));
  }
}

std::optional<uint64_t> write_queue::last_position() const {
  for (auto it = writes_.rbegin(); it != writes_.rend(); ++it)
    if (it->last) return it->last;
  return std::nullopt;
}

}  // namespace mnemo::actors::detail
