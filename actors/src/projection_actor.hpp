#pragma once

// The projection actor (private to the actors module).

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
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/journal_feed.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "projection_apply.hpp"
#include "projection_tail.hpp"

namespace mnemo::actors::detail {

using pull_atom = caf::atom_constant<caf::atom("mn_pull")>;
using written_atom = caf::atom_constant<caf::atom("mn_written")>;
using retry_atom = caf::atom_constant<caf::atom("mn_pretry")>;
using refetch_atom = caf::atom_constant<caf::atom("mn_refetch")>;
using write_due_atom = caf::atom_constant<caf::atom("mn_writdue")>;

/// Table of the projections' control state (paused flag).
constexpr std::string_view control_table = "mnemo.projection";
/// Table of the journal's release generation each exactly-once read model
/// was built for (see `journal::release_generation`).
constexpr std::string_view release_table = "mnemo.projection.release";

// What a write on the writer thread reports back.
struct write_outcome {
  persistence::error err;
  // Exactly-once: the handler failure that rolled the write back.
  std::optional<apply_failure> failed;
};

using outcome_slot = std::shared_ptr<std::optional<write_outcome>>;

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
        remote_(!spec_.source.empty()),
        exactly_once_{spec_.apply, spec_.apply_group} {
    if (remote_) spec_.options.in_commit = false;
    // A remote source counts as available once the endpoint said so.
    available_ = !remote_;
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
    subscribe();
    if (exactly_once_ && built_for_ < release_generation_) forget_released();
    send(this, pull_atom::value);
    return {
        [this](runtime::head_atom, uint64_t head) { on_head(head); },
        [this](runtime::feed_head_atom, const std::string&, uint64_t head) {
          available_ = true;
          on_remote_head(head);
        },
        [this](runtime::feed_down_atom, const std::string&) {
          available_ = false;
        },
        [this](refetch_atom) {
          refetch_pending_ = false;
          schedule_pull();
        },
        [this](pull_atom) { pull(); },
        [this](retry_atom) { on_retry_timer(); },
        [this](written_atom, uint64_t ticket) { on_written(ticket); },
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
          auto target = position != 0 ? position : std::max(head_, local_head());
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
        [j, at, remote = remote_, known = known_head_] {
          auto head = remote ? known->load() : j->head_position();
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
    // Releases concern this node's journal, not another member's.
    if (!exactly_once_ || remote_) return {};
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

  void subscribe() {
    if (remote_) {
      request(ctx_.cluster->endpoint(), caf::infinite,
              runtime::feed_follow_atom::value, spec_.source)
          .then(
              [this](uint64_t head, bool connected) {
                available_ = connected;
                on_remote_head(head);
              },
              [this](caf::error& err) { quit(err); });
      return;
    }
    if (!ctx_.event_bus) return;
    request(ctx_.event_bus, caf::infinite, runtime::subscribe_atom::value)
        .then([this](uint64_t head) { on_head(head); },
              [this](caf::error& err) { quit(err); });
  }

  // -- pulling ----------------------------------------------------------------

  // This node's journal head, or 0 for a remote source.
  uint64_t local_head() const {
    return remote_ ? 0 : ctx_.journal->head_position();
  }

  void on_head(uint64_t head) {
    head_ = std::max(head_, head);
    known_head_->store(head_, std::memory_order_relaxed);
    if (head_ > submitted()) schedule_pull();
  }

  void schedule_pull() {
    if (pull_scheduled_) return;
    pull_scheduled_ = true;
    send(this, pull_atom::value);
  }

  void pull() {
    pull_scheduled_ = false;
    if (busy_ || paused_ || waiting_retry_) return;
    if (!pipeline_.empty()) {
      // Management and failures wait until the pipeline drained.
      if (deferred_.empty() && !broken_ && pipelines() && !write_paced())
        pull_ahead();
      return;
    }
    run_deferred();
    if (busy_ || write_paced()) return;
    if (tails()) return start_tail();
    if (remote_) return fetch();
    if (pipelines()) return pull_ahead();
    auto batch = ctx_.journal->read_all(offset_ + 1, spec_.options.batch_size);
    if (!batch) return quit(runtime::to_caf_error(batch.error()));
    if (batch->empty()) return;
    head_ = std::max(head_, batch->back().position);
    handle_batch(std::move(*batch));
  }

  void handle_batch(envelopes batch) {
    if (!batch.empty()) last_write_ = clock().now();
    if (exactly_once_) return submit(std::move(batch), nullptr);
    auto [done, error_text] = run_effects(batch);
    std::optional<persistence::event_envelope> poison;
    if (done < batch.size()) poison = batch[done];
    batch.resize(done);
    if (poison) poison_ = std::make_pair(std::move(*poison), error_text);
    if (batch.empty()) return handle_poison();
    submit(std::move(batch), nullptr);
  }

  // At-least-once: runs the handler on the matching events in groups;
  // returns how many events of `batch` are done, and the error text if one
  // failed.
  std::pair<size_t, std::string> run_effects(const envelopes& batch) {
    auto group = std::max<size_t>(spec_.options.group_size, 1);
    envelopes pending;
    std::vector<size_t> index;  // positions in `batch` of `pending`
    for (size_t i = 0; i <= batch.size(); ++i) {
      bool last = i == batch.size();
      if (!last && spec_.filter.matches(batch[i])) {
        pending.push_back(batch[i]);
        index.push_back(i);
      }
      if (pending.empty() || (pending.size() < group && !last)) continue;
      if (auto err = guarded([&] { return spec_.effect(pending); })) {
        // Find the culprit one event at a time (repeats are allowed).
        for (size_t j = 0; j < pending.size(); ++j) {
          envelopes one{pending[j]};
          if (auto e = guarded([&] { return spec_.effect(one); }))
            return {index[j], e.message()};
        }
      }
      pending.clear();
      index.clear();
    }
    return {batch.size(), {}};
  }

  // Exactly-once: runs the handler on the matching events of `batch` inside
  // `txn`; on a handler error records the failure in `slot`.
  static persistence::error apply_batch(persistence::write_txn& txn,
                                        const envelopes& batch,
                                        const exactly_once_apply& apply,
                                        const projection_filter& filter,
                                        bool singly, const outcome_slot& slot) {
    std::optional<apply_failure> failed;
    auto err = apply_events(txn, batch, apply, filter, singly, failed);
    if (failed) {
      write_outcome out;
      out.failed = std::move(failed);
      slot->emplace(std::move(out));
    }
    return err;
  }

  // Writes the handled batch (exactly-once: applies it, a group handler
  // one event per call with `singly`) plus the offset of its last event,
  // and `park` as a dead letter if given.
  void submit(envelopes batch, std::shared_ptr<persistence::dead_letter> park,
              bool singly = false) {
    auto slot = std::make_shared<std::optional<write_outcome>>();
    auto shared = std::make_shared<envelopes>(std::move(batch));
    auto last = shared->empty() ? park->position : shared->back().position;
    auto apply = exactly_once_;
    auto filter = spec_.filter;
    auto name = spec_.name;
    auto fn = [slot, shared, apply, filter, name, park, last,
               singly](persistence::write_txn& txn) -> persistence::error {
      if (apply)
        if (auto err = apply_batch(txn, *shared, apply, filter, singly, slot))
          return err;
      if (park)
        if (auto err = persistence::dead_letter_store::park_in(txn, *park))
          return err;
      return persistence::offset_store::store_in(txn, name, last);
    };
    write(std::move(fn), slot, [this, shared, last](write_outcome out) {
      batch_written(std::move(*shared), last, std::move(out));
    });
  }

  void write(persistence::write_function fn, outcome_slot slot,
             std::function<void(write_outcome)> then) {
    busy_ = true;
    slot_ = slot;
    then_ = std::move(then);
    post_write(std::move(fn), std::move(slot));
  }

  // Hands `fn` to the journal; its outcome lands in `slot`, and a
  // `written_atom` with the new ticket tells this actor.
  void post_write(persistence::write_function fn, outcome_slot slot) {
    auto ticket = ++ticket_;
    auto me = caf::actor_cast<caf::actor>(this);
    auto* sink = ctx_.completions;
    sink->expect();
    ctx_.journal->write(std::move(fn),
                        [slot, sink, me, ticket](persistence::error err) {
                          if (!*slot) slot->emplace();
                          (*slot)->err = std::move(err);
                          sink->post([me, ticket] {
                            caf::anon_send(me, written_atom::value, ticket);
                          });
                        });
  }

  // -- pipelined writes (exactly-once, local, not in_commit) ------------------

  bool pipelines() const {
    return exactly_once_ && !remote_ && !poison_ &&
           spec_.options.write_pipeline > 1;
  }

  // Live events go through tail writes (`in_commit`) once the projection is
  // within one batch of the head; a backlog is read here, off the writer
  // thread, and written through the pipeline.
  bool tails() const {
    if (!exactly_once_ || remote_ || poison_ || !spec_.options.in_commit)
      return false;
    auto head = std::max(head_, local_head());
    return head <= offset_ + spec_.options.batch_size ||
           spec_.options.write_pipeline <= 1;
  }

  // Position of the last event read and submitted.
  uint64_t submitted() const {
    return pipeline_.empty() ? offset_ : pipeline_.back().last;
  }

  // Reads the batch after the last submitted one and submits it, if the
  // pipeline has room.
  void pull_ahead() {
    if (pipeline_.size() >= spec_.options.write_pipeline) return;
    auto after = submitted();
    auto batch = ctx_.journal->read_all(after + 1, spec_.options.batch_size);
    if (!batch) return quit(runtime::to_caf_error(batch.error()));
    if (batch->empty()) return;
    last_write_ = clock().now();
    auto last = batch->back().position;
    head_ = std::max(head_, last);
    // A full batch means there is probably more to read.
    if (batch->size() == spec_.options.batch_size)
      head_ = std::max(head_, last + 1);
    auto slot = std::make_shared<std::optional<write_outcome>>();
    auto shared = std::make_shared<envelopes>(std::move(*batch));
    auto apply = exactly_once_;
    auto filter = spec_.filter;
    auto name = spec_.name;
    auto fn = [slot, shared, apply, filter, name, after,
               last](persistence::write_txn& txn) -> persistence::error {
      auto stored = persistence::offset_store::load_in(txn, name);
      if (!stored) return stored.error();
      if (*stored != after)  // the write before this one failed
        return persistence::error{
            persistence::errc::version_conflict,
            "projection '" + name + "': the write before this one failed"};
      if (auto err = apply_batch(txn, *shared, apply, filter, false, slot))
        return err;
      return persistence::offset_store::store_in(txn, name, last);
    };
    post_write(std::move(fn), slot);
    pipeline_.push_back(pipelined_write{slot, shared, last});
    if (head_ > last) schedule_pull();
  }

  // Takes the outcomes of the pipelined writes that came back, in order.
  void drain_pipeline() {
    while (!pipeline_.empty() && *pipeline_.front().slot) {
      auto w = std::move(pipeline_.front());
      pipeline_.pop_front();
      auto out = std::move(**w.slot);
      // After a failure the writes behind it are stale and changed nothing.
      if (broken_) continue;
      if (out.err || out.failed) {
        broken_.emplace(std::move(*w.batch), std::move(out));
        continue;
      }
      advance(w.last);
    }
    if (!pipeline_.empty()) return;
    if (broken_) {
      auto [batch, out] = std::move(*broken_);
      broken_.reset();
      // As for a single write: the good prefix first, then the strategy.
      batch_written(std::move(batch), 0, std::move(out));
      if (busy_) return;
    }
    run_deferred();
    if (!busy_ && head_ > submitted()) schedule_pull();
  }

  void on_written(uint64_t ticket) {
    if (!pipeline_.empty()) return drain_pipeline();
    if (ticket != ticket_ || !slot_ || !*slot_) return;
    auto out = std::move(**slot_);
    slot_.reset();
    busy_ = false;
    auto then = std::move(then_);
    then_ = nullptr;
    then(std::move(out));
    if (busy_) return;
    run_deferred();
    if (!busy_ && head_ > offset_) schedule_pull();
  }

  void batch_written(envelopes batch, uint64_t last, write_outcome out) {
    if (out.failed && out.failed->whole_group) {
      // A group handler failed: the same events one per call find the
      // culprit (or all pass, if the failure was the group's or passing).
      return submit(std::move(batch), nullptr, true);
    }
    if (out.failed) {
      auto k = out.failed->index;
      poison_ = std::make_pair(batch[k], std::move(out.failed->text));
      if (k == 0) return handle_poison();
      batch.resize(k);  // commit the good prefix first
      return submit(std::move(batch), nullptr);
    }
    if (out.err) return quit(runtime::to_caf_error(out.err));
    advance(last);
    // A full batch means there is probably more to read.
    if (batch.size() == spec_.options.batch_size)
      head_ = std::max(head_, last + 1);
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

  // -- remote source ----------------------------------------------------------

  // Pulls from another member (projection_remote.cpp): the next batch
  // through the cluster endpoint, counting as the one operation in flight.
  void fetch();
  void fetched(const runtime::feed_batch& batch);
  void fetch_failed(const caf::error& err);
  void on_remote_head(uint64_t head);

  // -- tail writes (exactly-once, live) ---------------------------------------

  // Handles the events after the offset inside the group commit that
  // writes them (projection_tail.hpp); the chain runs while there are
  // events, and counts as the one write in flight.
  void start_tail() {
    busy_ = true;
    tail_started_ = clock().now();
    tail_ = std::make_shared<tail_chain>();
    tail_->journal = ctx_.journal;
    tail_->sink = ctx_.completions;
    tail_->owner = caf::actor_cast<caf::actor>(this);
    tail_->name = spec_.name;
    tail_->apply = exactly_once_;
    tail_->filter = spec_.filter;
    tail_->batch_size = tail_batch_size();
    tail_->ends_when_full = spec_.options.write_pipeline > 1;
    tail_->ends_each_write = spec_.options.write_interval.count() > 0;
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
    busy_ = false;
    // A full batch ended the chain: there is a backlog (see `tails`). An
    // empty one found the head: the journal's own head says whether more
    // came since (a guessed head would start tail writes forever).
    if (out.handled == tail_batch_size())
      head_ = std::max(head_, out.last + 1);
    else if (out.handled == 0 && !out.err && !out.failed)
      head_ = std::max(offset_, local_head());
    if (out.failed) {
      // The existing path takes over: commit the good prefix, then the
      // failure strategy for the failing event.
      write_outcome failed;
      failed.failed = std::move(out.failed);
      batch_written(std::move(out.batch), 0, std::move(failed));
    } else if (out.err) {
      return quit(runtime::to_caf_error(out.err));
    } else if (out.handled > 0) {
      advance(out.last);
    }
    if (busy_) return;
    run_deferred();
    if (!busy_ && head_ > offset_) schedule_pull();
  }

  // `write_interval`: true while the projection is live (within a batch
  // of the head; catch-up is not paced) and its last write that handled
  // events started less than an interval ago. Then one timer
  // (`write_due_atom`) pulls again when the interval is over, and the
  // events that come meanwhile wait for that write.
  bool write_paced() {
    auto interval = spec_.options.write_interval;
    if (interval.count() <= 0 || !last_write_) return false;
    auto head = std::max(head_, local_head());
    if (head > submitted() + tail_batch_size()) return false;
    auto due = *last_write_ + interval;
    auto now = clock().now();
    if (now >= due) return false;
    if (!write_timer_) {
      write_timer_ = true;
      delayed_send(this, due - now, write_due_atom::value);
    }
    return true;
  }

  size_t tail_batch_size() const {
    return std::max<size_t>(spec_.options.batch_size, 1);
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
    submit({}, letter);
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

  // Runs `op` now if no write is in flight, else after it.
  void when_idle(std::function<void()> op) {
    if (!busy_ && pipeline_.empty()) return op();
    deferred_.push_back(std::move(op));
    // A tail chain under steady load would never end by itself.
    if (tail_) tail_->stop = true;
  }

  void run_deferred() {
    while (!busy_ && pipeline_.empty() && !deferred_.empty()) {
      auto op = std::move(deferred_.front());
      deferred_.pop_front();
      op();
    }
  }

  // A control write (pause flag, reset, rebuild) in its own group commit;
  // `after` runs and the caller is answered once it is durable.
  caf::result<caf::unit_t> control(persistence::write_function fn,
                                   std::function<void()> after) {
    auto rp = make_response_promise<caf::unit_t>();
    when_idle([this, fn, after, rp]() mutable {
      auto slot = std::make_shared<std::optional<write_outcome>>();
      write(fn, slot, [after, rp](write_outcome out) mutable {
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
    if (exactly_once_ && !spec_.clear)
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
    head_ = std::max(head_, local_head());
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
    st.head = std::max(head_, local_head());
    st.lag = st.head > offset_ ? st.head - offset_ : 0;
    st.paused = paused_;
    st.attempts = attempts_;
    st.last_error = last_error_;
    st.source = spec_.source;
    st.available = available_;
    return st;
  }

  projection_context ctx_;
  projection_spec spec_;
  std::mt19937_64 rng_;
  uint64_t offset_ = 0;
  // caught_up_atom requests waiting for the offset, by target position.
  std::multimap<uint64_t, caf::typed_response_promise<uint64_t>>
      caught_up_waiters_;
  std::shared_ptr<std::atomic<uint64_t>> published_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  std::vector<uint64_t> metric_tokens_;
  uint64_t head_ = 0;
  // Remote source: the head for the lag gauge; whether the source answers;
  // failed pulls in a row; a delayed pull is pending.
  bool remote_ = false;
  // The exactly-once handler (per event or grouped); empty for an
  // at-least-once projection.
  exactly_once_apply exactly_once_;
  std::shared_ptr<std::atomic<uint64_t>> known_head_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  bool available_ = true;
  uint64_t fetch_failures_ = 0;
  bool refetch_pending_ = false;
  bool paused_ = false;
  // Exactly-once: the journal's release generation, and the one the read
  // model was built for.
  uint64_t release_generation_ = 0;
  uint64_t built_for_ = 0;
  bool busy_ = false;
  bool pull_scheduled_ = false;
  bool waiting_retry_ = false;
  uint64_t attempts_ = 0;
  std::string last_error_;
  std::optional<std::pair<persistence::event_envelope, std::string>> poison_;
  outcome_slot slot_;
  std::function<void(write_outcome)> then_;
  uint64_t ticket_ = 0;
  std::deque<std::function<void()>> deferred_;
  // Pipelined exactly-once writes in flight, in submission order, and the
  // first one that failed (its batch and outcome), taken up once the
  // pipeline drained.
  struct pipelined_write {
    outcome_slot slot;
    std::shared_ptr<envelopes> batch;
    uint64_t last;
  };
  std::deque<pipelined_write> pipeline_;
  std::optional<std::pair<envelopes, write_outcome>> broken_;
  // The tail chain in flight, if any.
  tail_chain_ptr tail_;
  // When the tail chain in flight started, and when the last write (tail
  // chain, pipelined or single) that handled events did (`write_interval`).
  caf::actor_clock::time_point tail_started_;
  std::optional<caf::actor_clock::time_point> last_write_;
  // A `write_due_atom` is on its way.
  bool write_timer_ = false;
};

}  // namespace mnemo::actors::detail
