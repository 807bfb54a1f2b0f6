#pragma once

// The projection actor (private to the actors module). It composes a
// source (projection_source.hpp: this node's journal or another member's)
// with the handling of its batches and a plan for writing them
// (projection_writes.hpp: exactly-once in its own transactions, pipelined
// or not, or in the commit that writes the events, projection_tail.hpp;
// at-least-once before the write of its offset), and owns what every
// projection shares: offset and head, pausing and the other management
// requests, the failure strategy and dead letters, and `caught_up_atom`.

#include "mnemo/actors/projection.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_response_promise.hpp>

#include "mnemo/persistence/dead_letter_store.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "projection_apply.hpp"
#include "projection_source.hpp"
#include "projection_tail.hpp"
#include "projection_writes.hpp"

namespace mnemo::actors::detail {

using pull_atom = caf::atom_constant<caf::atom("mn_pull")>;
using retry_atom = caf::atom_constant<caf::atom("mn_pretry")>;
using write_due_atom = caf::atom_constant<caf::atom("mn_writdue")>;

/// Table of the projections' control state (paused flag).
constexpr std::string_view control_table = "mnemo.projection";
/// Table of the journal's release generation each exactly-once read model
/// was built for (see `journal::release_generation`).
constexpr std::string_view release_table = "mnemo.projection.release";

inline std::string describe_event(const persistence::event_envelope& env) {
  return "position " + std::to_string(env.position) + " (stream '" +
         env.stream_id + "', sequence " + std::to_string(env.sequence) +
         ", type '" + env.type + "')";
}

class projection_actor : public caf::event_based_actor {
 public:
  projection_actor(caf::actor_config& cfg, projection_context ctx,
                   projection_spec spec)
      : caf::event_based_actor(cfg),
        ctx_(std::move(ctx)),
        spec_(std::move(spec)),
        handling_(std::make_shared<const batch_handling>(spec_)),
        writes_(ctx_.journal, ctx_.completions) {
    source_hooks hooks;
    hooks.head = [this](uint64_t head) { on_head(head); };
    hooks.wake = [this] { schedule_pull(); };
    hooks.fail = [this](caf::error err) { quit(std::move(err)); };
    hooks.offset = [this] { return offset_; };
    source_ = detail::open_source(this, ctx_, spec_, std::move(hooks));
    plan_ = write_plan::of(spec_.options, handling_->in_transaction(),
                           source_->local_journal() != nullptr);
    rng_.seed(spec_.options.seed != 0 ? spec_.options.seed
                                      : std::random_device{}());
  }

  const char* name() const override { return "mnemo.projection"; }

  caf::behavior make_behavior() override {
    if (auto err = load()) {
      quit(err);
      return {};
    }
    publish_metrics();
    source_->subscribe();
    if (built_for_ < release_generation_) forget_released();
    send(this, pull_atom::value);
    caf::message_handler own{
        [this](pull_atom) { pull(); },
        [this](retry_atom) { on_retry_timer(); },
        [this](written_atom) { on_written(); },
        [this](tail_atom) { on_tail(); },
        [this](write_due_atom) {
          write_timer_ = false;
          schedule_pull();
        },
        [this](pause_atom) { return set_paused(true); },
        [this](resume_atom) { return set_paused(false); },
        [this](reset_atom, uint64_t position) { return reset(position); },
        [this](rebuild_atom) { return rebuild(); },
        [this](rebuild_shared_atom) { return rebuild_shared(); },
        [this](status_atom) { return status(); },
        [this](caught_up_atom, uint64_t position) -> caf::result<uint64_t> {
          auto target = position != 0 ? position : newest_head();
          if (offset_ >= target) return offset_;
          auto rp = make_response_promise<uint64_t>();
          caught_up_waiters_.emplace(target, rp);
          return rp;
        },
        [this](dead_letters_atom, uint64_t from, uint64_t max) {
          return dead_letters(from, max);
        },
        [this](retry_dead_atom, uint64_t position) {
          return retry_dead(position);
        },
        [this](drop_dead_atom, uint64_t position) {
          return drop_dead(position);
        },
    };
    return own.or_else(source_->handlers());
  }

  void on_exit() override {
    for (auto& [target, rp] : caught_up_waiters_)
      rp.deliver(runtime::make_error(
          runtime::errc::entity_stopped,
          "projection '" + spec_.name + "' stopped at offset " +
              std::to_string(offset_) + ", before position " +
              std::to_string(target)));
    caught_up_waiters_.clear();
    // The chain holds a handle to this actor: break the cycle.
    if (tail_) tail_->stop = true;
    tail_.reset();
    if (ctx_.metrics)
      for (auto token : metric_tokens_) ctx_.metrics->remove(token);
    metric_tokens_.clear();
  }

 private:
  // -- start ------------------------------------------------------------------

  void publish_metrics() {
    published_->store(offset_, std::memory_order_relaxed);
    if (!ctx_.metrics) return;
    runtime::metric_labels labels{{"projection", spec_.name}};
    auto* j = ctx_.journal;
    auto at = published_;
    metric_tokens_.push_back(ctx_.metrics->gauge_fn(
        "mnemo_projection_offset",
        "Global position of the last event a projection handled.", labels,
        [at] { return static_cast<double>(at->load()); }));
    metric_tokens_.push_back(ctx_.metrics->gauge_fn(
        "mnemo_projection_lag_events",
        "Committed events a projection has not handled yet.", labels,
        [at, head_of = source_->head_gauge()] {
          auto head = head_of();
          auto offset = at->load();
          return static_cast<double>(head > offset ? head - offset : 0);
        }));
    metric_tokens_.push_back(ctx_.metrics->gauge_fn(
        "mnemo_projection_dead_letters", "Events a projection parked.", labels,
        [j, name = spec_.name] {
          auto n = j->dead_letters().count(name);
          return n ? static_cast<double>(*n) : std::nan("");
        }));
  }

  caf::error load() {
    auto offset = ctx_.journal->offsets().load(spec_.name);
    if (!offset) return runtime::to_caf_error(offset.error());
    offset_ = *offset;
    head_ = std::max(offset_, local_head());
    std::optional<std::string> control;
    auto err = ctx_.journal->read([&](persistence::read_txn& txn) {
      auto value =
          persistence::table_store::get_in(txn, control_table, spec_.name);
      if (!value) return value.error();
      control = std::move(*value);
      return persistence::error{};
    });
    if (err) return runtime::to_caf_error(err);
    paused_ = control && *control == "paused";
    // Releases concern a read model of this node's journal, not of another
    // member's.
    if (!handling_->in_transaction() || !source_->local_journal()) return {};
    auto generation = ctx_.journal->release_generation();
    if (!generation) return runtime::to_caf_error(generation.error());
    release_generation_ = *generation;
    err = ctx_.journal->read([&](persistence::read_txn& txn) {
      auto value =
          persistence::table_store::get_in(txn, release_table, spec_.name);
      if (!value) return value.error();
      built_for_ = *value ? std::strtoull((*value)->c_str(), nullptr, 10) : 0;
      return persistence::error{};
    });
    if (err) return runtime::to_caf_error(err);
    return {};
  }

  // Streams left this journal (a cluster membership change) since the read
  // model was built: it may hold their data, so it is rebuilt from what
  // stays. A projection that has handled nothing, or cannot clear its read
  // model, only records the generation.
  void forget_released() {
    auto name = spec_.name;
    auto clear = offset_ > 0 ? spec_.clear : clear_function{};
    auto generation = std::to_string(release_generation_);
    auto rebuild = static_cast<bool>(clear);
    control(
        [name, clear, generation](persistence::write_txn& txn) {
          if (clear) {
            if (auto err = guarded([&] { return clear(txn); })) return err;
            if (auto err = persistence::offset_store::store_in(txn, name, 0))
              return err;
          }
          return persistence::table_store::put_in(txn, release_table, name,
                                                  generation);
        },
        [this, rebuild] {
          built_for_ = release_generation_;
          if (rebuild) restart_from(0);
        });
  }

  // -- pulling ----------------------------------------------------------------

  // This node's journal head, or 0 for another member's journal.
  uint64_t local_head() const { return source_->local_head(); }

  void on_head(uint64_t head) {
    head_ = std::max(head_, head);
    if (head_ > submitted()) schedule_pull();
  }

  void schedule_pull() {
    if (pull_scheduled_) return;
    pull_scheduled_ = true;
    send(this, pull_atom::value);
  }

  // No read, write or tail chain in flight.
  bool idle() const { return writes_.empty() && !reading_ && !tail_; }

  // Batch writes in flight at most: while an event fails, or a failed
  // write's events are written again (the good prefix, a group one event
  // per call), one.
  size_t depth() const { return poison_ || retrying_ ? 1 : plan_.depth; }

  // Live events go through tail writes (`in_commit`) once the projection is
  // within one batch of the head; a backlog is read here, off the writer
  // thread, and written in batches (pipelined) until it is back there.
  bool tails() const {
    return plan_.in_commit && !poison_ &&
           (near_head(offset_) || plan_.depth <= 1);
  }

  // With `in_commit`, the batches read ahead reached the last batch before
  // the head: no more, the writes in flight drain and tail writes take
  // over (reading on would keep the live events on the slower path).
  bool back_to_tails() const {
    return plan_.in_commit && !poison_ && near_head(submitted());
  }

  // The newest head known: notified, guessed, or this node's journal's.
  uint64_t newest_head() const { return std::max(head_, local_head()); }

  // Position `from` is within one batch of the newest head.
  bool near_head(uint64_t from) const {
    return newest_head() <= from + plan_.batch_size;
  }

  // Position of the last event read and submitted.
  uint64_t submitted() const {
    return writes_.last_position().value_or(offset_);
  }

  void pull() {
    pull_scheduled_ = false;
    if (paused_ || waiting_retry_ || reading_ || tail_) return;
    if (!writes_.empty()) {
      // Reads go ahead of batch writes while there is room; management and
      // failures wait until the writes drained.
      if (deferred_.empty() && !broken_ && writes_.only_batches() &&
          writes_.size() < depth() && !back_to_tails() && !write_paced())
        read_next();
      return;
    }
    run_deferred();
    if (!idle() || write_paced()) return;
    if (tails()) return start_tail();
    read_next();
  }

  // Reads the batch after the last submitted one; counts as the operation
  // in flight until it is there (at once for this node's journal).
  void read_next() {
    reading_ = true;
    source_->read(submitted(), plan_.batch_size,
                  [this](std::optional<envelopes> batch) {
                    reading_ = false;
                    if (batch && !batch->empty())
                      return handle_batch(std::move(*batch));
                    run_deferred();
                  });
  }

  void handle_batch(envelopes batch) {
    last_write_ = clock().now();
    auto last = batch.back().position;
    head_ = std::max(head_, last);
    // A full batch means there is probably more to read.
    if (batch.size() == plan_.batch_size) head_ = std::max(head_, last + 1);
    auto [done, error_text] = handling_->before_write(batch);
    if (done < batch.size()) {
      poison_ = std::make_pair(batch[done], std::move(error_text));
      batch.resize(done);
    }
    if (batch.empty()) return handle_poison();
    write_batch(std::move(batch), nullptr);
    if (writes_.size() < depth() && head_ > submitted()) schedule_pull();
  }

  // Writes `batch` (exactly-once: applies it, a group handler one event
  // per call with `singly`) plus the offset of its last event, and `park`
  // as a dead letter if given. The write first checks that the one before
  // it stored the offset it started from: after a failure the writes
  // behind it change nothing, and the failure strategy starts from the
  // failing event.
  void write_batch(envelopes batch,
                   std::shared_ptr<persistence::dead_letter> park,
                   bool singly = false) {
    auto slot = make_slot();
    auto shared = std::make_shared<envelopes>(std::move(batch));
    auto after = submitted();
    auto last = shared->empty() ? park->position : shared->back().position;
    auto fn = [slot, shared, handling = handling_, name = spec_.name, park,
               after, last,
               singly](persistence::write_txn& txn) -> persistence::error {
      // A write the journal runs again (its map grew, its group commit was
      // split) starts with no failure recorded.
      slot->outcome.reset();
      auto stored = persistence::offset_store::load_in(txn, name);
      if (!stored) return stored.error();
      if (*stored != after)
        return persistence::error{
            persistence::errc::version_conflict,
            "projection '" + name + "': offset " + std::to_string(*stored) +
                " stored, not " + std::to_string(after) +
                ": the write before this one failed, or another instance "
                "wrote it"};
      std::optional<apply_failure> failed;
      if (auto err = handling->in_write(txn, *shared, singly, failed)) {
        if (failed) {
          slot->outcome.emplace();
          slot->outcome->failed = std::move(failed);
        }
        return err;
      }
      if (park)
        if (auto err = persistence::dead_letter_store::park_in(txn, *park))
          return err;
      return persistence::offset_store::store_in(txn, name, last);
    };
    writes_.submit(caf::actor_cast<caf::actor>(this), std::move(fn),
                   std::move(slot), last,
                   [this, shared, last](write_outcome out) {
                     batch_written(std::move(*shared), last, std::move(out));
                   });
  }

  void batch_written(envelopes batch, uint64_t last, write_outcome out) {
    retrying_ = false;
    // After a failure the writes behind it are stale and changed nothing.
    if (broken_) return;
    if (out.err || out.failed) {
      broken_.emplace(std::move(batch), std::move(out));
      return;
    }
    advance(last);
  }

  void on_written() {
    writes_.drain();
    if (!writes_.empty()) {
      if (head_ > submitted()) schedule_pull();
      return;
    }
    if (broken_) {
      auto [batch, out] = std::move(*broken_);
      broken_.reset();
      take_failure(std::move(batch), std::move(out));
      if (!idle()) return;
    }
    run_deferred();
    if (idle() && head_ > submitted()) schedule_pull();
  }

  // A write of `batch` failed: a handler failure (the good prefix is
  // committed first, then the failure strategy meets the failing event) or
  // the journal's error (the projection stops).
  void take_failure(envelopes batch, write_outcome out) {
    retrying_ = true;
    if (out.failed && out.failed->whole_group) {
      // A group handler failed: the same events one per call find the
      // culprit (or all pass, if the failure was the group's or passing).
      return write_batch(std::move(batch), nullptr, true);
    }
    if (out.failed) {
      auto k = out.failed->index;
      poison_ = std::make_pair(batch[k], std::move(out.failed->text));
      if (k == 0) return handle_poison();
      batch.resize(k);
      return write_batch(std::move(batch), nullptr);
    }
    quit(runtime::to_caf_error(out.err));
  }

  // The events up to `last` are handled and their offset is stored.
  void advance(uint64_t last) {
    offset_ = last;
    published_->store(last, std::memory_order_relaxed);
    answer_caught_up();
    if (poison_ && poison_->first.position <= offset_) poison_.reset();
    if (poison_) return handle_poison();
    if (!waiting_retry_) {
      attempts_ = 0;
      last_error_.clear();
    }
  }

  // -- tail writes (exactly-once, this node's journal, live) ------------------

  // Handles the events after the offset inside the group commit that
  // writes them (projection_tail.hpp); the chain runs while there are
  // events, and counts as the operation in flight.
  void start_tail() {
    tail_started_ = clock().now();
    tail_ = std::make_shared<tail_chain>();
    tail_->journal = ctx_.journal;
    tail_->sink = ctx_.completions;
    tail_->owner = caf::actor_cast<caf::actor>(this);
    tail_->name = spec_.name;
    tail_->apply = handling_->apply();
    tail_->filter = handling_->filter();
    tail_->batch_size = plan_.batch_size;
    tail_->ends_when_full = plan_.depth > 1;
    tail_->ends_each_write = plan_.interval.count() > 0;
    ctx_.completions->expect();
    submit_tail(tail_, offset_);
  }

  void on_tail() {
    if (!tail_) return;
    tail_outcome out;
    {
      std::lock_guard<std::mutex> guard{tail_->mtx};
      if (tail_->done.empty()) return;
      out = std::move(tail_->done.front());
      tail_->done.pop_front();
    }
    // Only a tail write that wrote counts for `write_interval`: one that
    // found nothing (a quiet journal) must not delay the next event.
    if (out.handled > 0) last_write_ = tail_started_;
    if (out.more) return advance(out.last);
    tail_.reset();
    // A full batch ended the chain: there is a backlog (see `tails`). An
    // empty one found the head: the journal's own head says whether more
    // came since (a guessed head would start tail writes forever).
    if (out.handled == plan_.batch_size)
      head_ = std::max(head_, out.last + 1);
    else if (out.handled == 0 && !out.err && !out.failed)
      head_ = std::max(offset_, local_head());
    if (out.failed) {
      write_outcome failed;
      failed.failed = std::move(out.failed);
      take_failure(std::move(out.batch), std::move(failed));
    } else if (out.err) {
      return quit(runtime::to_caf_error(out.err));
    } else if (out.handled > 0) {
      advance(out.last);
    }
    if (!idle()) return;
    run_deferred();
    if (idle() && head_ > offset_) schedule_pull();
  }

  // `write_interval`: true while the projection is live (within a batch
  // of the head; catch-up is not paced) and its last write that handled
  // events started less than an interval ago. Then one timer
  // (`write_due_atom`) pulls again when the interval is over, and the
  // events that come meanwhile wait for that write.
  bool write_paced() {
    if (plan_.interval.count() <= 0 || !last_write_) return false;
    if (!near_head(submitted())) return false;
    auto due = *last_write_ + plan_.interval;
    auto now = clock().now();
    if (now >= due) return false;
    if (!write_timer_) {
      write_timer_ = true;
      delayed_send(this, due - now, write_due_atom::value);
    }
    return true;
  }

  // -- failures ---------------------------------------------------------------

  void handle_poison() {
    auto& [env, text] = *poison_;
    ++attempts_;
    last_error_ = text;
    auto strategy = spec_.options.on_failure;
    bool retries = strategy == failure_strategy::retry_then_fail ||
                   strategy == failure_strategy::retry_then_skip;
    if (retries && attempts_ <= spec_.options.max_retries) {
      auto delay =
          runtime::backoff_delay(spec_.options.retry_backoff, attempts_);
      std::uniform_real_distribution<double> factor{
          1.0, 1.0 + std::max(spec_.options.retry_backoff.jitter, 0.0)};
      auto ms = static_cast<int64_t>(static_cast<double>(delay.count()) *
                                     factor(rng_));
      waiting_retry_ = true;
      poison_.reset();  // the retry reads the event again
      delayed_send(this, std::chrono::milliseconds{ms}, retry_atom::value);
      return;
    }
    if (strategy == failure_strategy::fail ||
        strategy == failure_strategy::retry_then_fail)
      return quit(runtime::make_error(
          runtime::errc::handler_failed,
          "projection '" + spec_.name + "' failed at " + describe_event(env) +
              " after " + std::to_string(attempts_) + " attempt(s): " + text));
    auto letter = std::make_shared<persistence::dead_letter>();
    letter->projection = spec_.name;
    letter->position = env.position;
    letter->stream_id = env.stream_id;
    letter->sequence = env.sequence;
    letter->event_type = env.type;
    letter->error = text;
    letter->attempts = static_cast<uint32_t>(attempts_);
    letter->parked_at_ms = now_ms();
    write_batch({}, letter);
  }

  void on_retry_timer() {
    waiting_retry_ = false;
    schedule_pull();
  }

  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // -- management -------------------------------------------------------------

  // Runs `op` now if nothing is in flight, else after it.
  void when_idle(std::function<void()> op) {
    if (idle()) return op();
    deferred_.push_back(std::move(op));
    // A tail chain under steady load would never end by itself.
    if (tail_) tail_->stop = true;
  }

  void run_deferred() {
    while (idle() && !deferred_.empty()) {
      auto op = std::move(deferred_.front());
      deferred_.pop_front();
      op();
    }
  }

  // A write that is not a batch's (control, dead letters); `then` gets its
  // outcome.
  void write(persistence::write_function fn,
             std::function<void(write_outcome)> then) {
    writes_.submit(caf::actor_cast<caf::actor>(this), std::move(fn),
                   make_slot(), std::nullopt, std::move(then));
  }

  // A control write (pause flag, reset, rebuild) in its own group commit;
  // `after` runs and the caller is answered once it is durable.
  caf::result<caf::unit_t> control(persistence::write_function fn,
                                   std::function<void()> after) {
    auto rp = make_response_promise<caf::unit_t>();
    when_idle([this, fn, after, rp]() mutable {
      write(fn, [after, rp](write_outcome out) mutable {
        if (out.err) {
          rp.deliver(runtime::to_caf_error(out.err));
          return;
        }
        after();
        rp.deliver(caf::unit);
      });
    });
    return rp;
  }

  caf::result<caf::unit_t> set_paused(bool paused) {
    auto name = spec_.name;
    return control(
        [name, paused](persistence::write_txn& txn) {
          return persistence::table_store::put_in(
              txn, control_table, name, paused ? "paused" : "running");
        },
        [this, paused] { paused_ = paused; });
  }

  caf::result<caf::unit_t> reset(uint64_t position) {
    auto name = spec_.name;
    return control(
        [name, position](persistence::write_txn& txn) {
          return persistence::offset_store::store_in(txn, name, position);
        },
        [this, position] { restart_from(position); });
  }

  caf::result<caf::unit_t> rebuild() {
    if (handling_->in_transaction() && !spec_.clear)
      return runtime::make_error(
          runtime::errc::invalid_argument,
          "projection '" + spec_.name + "' has no clear function to rebuild");
    auto name = spec_.name;
    auto clear = spec_.clear;
    return control(
        [name, clear](persistence::write_txn& txn) {
          if (clear)
            if (auto err = guarded([&] { return clear(txn); })) return err;
          return persistence::offset_store::store_in(txn, name, 0);
        },
        [this] { restart_from(0); });
  }

  caf::result<caf::unit_t> rebuild_shared() {
    if (!spec_.shared_clear)
      return runtime::make_error(
          runtime::errc::invalid_argument,
          "projection '" + spec_.name +
              "' is not a copy of a cluster-wide read model");
    if (!paused_)
      return runtime::make_error(
          runtime::errc::invalid_argument,
          "projection '" + spec_.name +
              "' is running: pause every copy of the model first");
    auto name = spec_.name;
    auto clear = spec_.shared_clear;
    return control(
        [name, clear](persistence::write_txn& txn) {
          if (auto err = guarded([&] { return clear(txn); })) return err;
          return persistence::offset_store::store_in(txn, name, 0);
        },
        [this] { restart_from(0); });
  }

  // Answers the `caught_up_atom` requests whose position the offset
  // reached.
  void answer_caught_up() {
    while (!caught_up_waiters_.empty() &&
           caught_up_waiters_.begin()->first <= offset_) {
      caught_up_waiters_.begin()->second.deliver(offset_);
      caught_up_waiters_.erase(caught_up_waiters_.begin());
    }
  }

  void restart_from(uint64_t position) {
    offset_ = position;
    published_->store(position, std::memory_order_relaxed);
    answer_caught_up();
    poison_.reset();
    waiting_retry_ = false;
    attempts_ = 0;
    last_error_.clear();
    head_ = newest_head();
  }

  // Dead-letter management (projection_dead_letters.cpp).
  caf::result<std::vector<dead_letter_info>> dead_letters(uint64_t from,
                                                          uint64_t max);
  caf::result<caf::unit_t> retry_dead(uint64_t position);
  void retry_parked(persistence::event_envelope env, persistence::dead_letter d,
                    caf::typed_response_promise<caf::unit_t> rp);
  void repark(persistence::dead_letter d, std::string text,
              caf::typed_response_promise<caf::unit_t> rp);
  caf::result<bool> drop_dead(uint64_t position);

  projection_status status() {
    projection_status st;
    st.name = spec_.name;
    st.offset = offset_;
    st.head = newest_head();
    st.lag = st.head > offset_ ? st.head - offset_ : 0;
    st.paused = paused_;
    st.attempts = attempts_;
    // A handler's failure first; else what keeps the source from being read.
    st.last_error = !last_error_.empty() ? last_error_ : source_->problem();
    st.source = spec_.source;
    st.available = source_->available();
    return st;
  }

  projection_context ctx_;
  projection_spec spec_;
  // The pieces: where the events come from, how the handler meets them, how
  // they are written, and the writes in flight.
  std::shared_ptr<const batch_handling> handling_;
  std::unique_ptr<projection_source> source_;
  write_plan plan_;
  write_queue writes_;
  std::mt19937_64 rng_;
  uint64_t offset_ = 0;
  // Newest head known (of the source), or a guess one past a full batch.
  uint64_t head_ = 0;
  // caught_up_atom requests waiting for the offset, by target position.
  std::multimap<uint64_t, caf::typed_response_promise<uint64_t>>
      caught_up_waiters_;
  std::shared_ptr<std::atomic<uint64_t>> published_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  std::vector<uint64_t> metric_tokens_;
  bool paused_ = false;
  // Exactly-once of this node's journal: the journal's release generation,
  // and the one the read model was built for.
  uint64_t release_generation_ = 0;
  uint64_t built_for_ = 0;
  bool pull_scheduled_ = false;
  // A read of the source is in flight (another member's journal).
  bool reading_ = false;
  // The failure strategy: a retry timer is pending; failed attempts and the
  // last handler error; the failing event (and its error) while the events
  // before it are committed or it meets the strategy.
  bool waiting_retry_ = false;
  uint64_t attempts_ = 0;
  std::string last_error_;
  std::optional<std::pair<persistence::event_envelope, std::string>> poison_;
  // A failed write's events are being written again (see `depth`).
  bool retrying_ = false;
  // The first batch write that failed (its batch and outcome), taken up
  // once the writes in flight drained.
  std::optional<std::pair<envelopes, write_outcome>> broken_;
  // Management requests waiting until nothing is in flight.
  std::deque<std::function<void()>> deferred_;
  // The tail chain in flight, if any.
  tail_chain_ptr tail_;
  // When the tail chain in flight started, and when the last write (tail
  // chain or batch) that handled events did (`write_interval`).
  caf::actor_clock::time_point tail_started_;
  std::optional<caf::actor_clock::time_point> last_write_;
  // A `write_due_atom` is on its way.
  bool write_timer_ = false;
};

}  // namespace mnemo::actors::detail
