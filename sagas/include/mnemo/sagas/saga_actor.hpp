#pragma once

// The actor of one saga instance (included by saga.hpp).

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace mnemo::sagas {

namespace detail {

template <class T>
std::string pack(const T& x) {
  msgpack::sbuffer buf{128};
  msgpack::pack(buf, x);
  return std::string{buf.data(), buf.size()};
}

inline int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace detail

/// The actor of saga `S` with id `id`. Spawn through `spawn_saga_registry`.
template <class S>
class saga_actor : public caf::event_based_actor {
 public:
  using data_type = typename S::data;

  saga_actor(caf::actor_config& cfg, saga_context ctx, std::string id,
             std::shared_ptr<const definition<data_type>> def)
      : caf::event_based_actor(cfg),
        ctx_(std::move(ctx)),
        id_(std::move(id)),
        core_({ctx_.journal, ctx_.registry, ctx_.completions},
              saga_stream<S>(id_)),
        stream_(core_.stream()),
        def_(std::move(def)),
        codec_(*ctx_.registry) {
    if (!ctx_.wall_ms) ctx_.wall_ms = detail::system_ms;
    rng_.seed(std::hash<std::string>{}(stream_));
  }

  const char* name() const override { return "mnemo.saga"; }

  caf::behavior make_behavior() override {
    set_exit_handler([this](caf::exit_msg& msg) {
      fail_waiters(runtime::make_error(runtime::errc::entity_stopped,
                                       "saga '" + stream_ + "' stopped"));
      quit(msg.reason);
    });
    start_recovery();
    return {
        [this](actors::recover_atom) { recover_step(); },
        [this](start_atom, data_type& data) -> caf::result<saga_status> {
          auto rp = make_response_promise<saga_status>();
          when_recovered(rp, [this, data = std::move(data)](auto& p) mutable {
            start(std::move(data), p);
          });
          return rp;
        },
        [this](status_atom) -> caf::result<saga_status> {
          auto rp = make_response_promise<saga_status>();
          when_recovered(rp, [this](auto& p) { p.deliver(status()); });
          return rp;
        },
        [this](deliver_atom, uint64_t position) -> caf::result<bool> {
          auto rp = make_response_promise<bool>();
          when_recovered(
              rp, [this, position](auto& p) { deliver({}, position, {}, p); });
          return rp;
        },
        [this](deliver_atom, std::string& source, uint64_t position,
               std::string& event) -> caf::result<bool> {
          auto rp = make_response_promise<bool>();
          if (source.empty() || event.empty()) {
            rp.deliver(runtime::make_error(
                runtime::errc::invalid_argument,
                "saga '" + stream_ +
                    "': a delivery from another log needs its source and "
                    "the event"));
            return rp;
          }
          when_recovered(rp, [this, source = std::move(source), position,
                              event = std::move(event)](auto& p) mutable {
            deliver(std::move(source), position, std::move(event), p);
          });
          return rp;
        },
        [this](runtime::passivate_atom) {
          // The registry that asks is the one to wake the saga again.
          auto registry = caf::actor_cast<caf::actor>(current_sender());
          if (!recovering_) return passivate(std::move(registry));
          // After recovery: passivating needs to know the saga's progress.
          stash_.push_back([this, registry](const caf::error* err) {
            if (!err) passivate(registry);
          });
        },
        [this](saga_persisted_atom, uint64_t ticket) { on_persisted(ticket); },
        [this](saga_retry_atom, uint64_t gen) {
          if (gen != retry_gen_) return;
          // A wait longer than one timer: the next part of it.
          if (retry_partial_) {
            auto now = ctx_.wall_ms();
            if (progress_.retry_at_ms > now)
              return arm_retry(progress_.retry_at_ms - now);
          }
          if (!busy_ && !in_flight_ && !awaiting_) {
            progress_.retry_at_ms = 0;
            advance();
          }
        },
        [this](saga_deadline_atom, uint64_t gen) { on_deadline(gen); },
    };
  }

 private:
  using events = std::vector<saga_event>;

  // -- recovery and start -----------------------------------------------------

  void start_recovery() {
    // From the latest snapshot, if one was taken, then the events after it,
    // a chunk per message (recover_step).
    auto found = core_.load_snapshot(progress_, nullptr);
    if (!found) return stop_now(std::move(found.error()));
    caf::anon_send(caf::actor_cast<caf::actor>(this),
                   actors::recover_atom::value);
  }

  void recover_step() {
    if (!recovering_) return;
    auto more = core_.replay_chunk(
        ctx_.recovery_chunk,
        [this](const persistence::event_envelope& env) -> caf::error {
          auto ev = codec_.decode(env);
          if (!ev) return runtime::to_caf_error(ev.error());
          progress_.apply(*ev);
          return {};
        });
    if (!more) return stop_now(std::move(more.error()));
    if (*more) {
      caf::anon_send(caf::actor_cast<caf::actor>(this),
                     actors::recover_atom::value);
      return;
    }
    if (progress_.phase != saga_phase::fresh) {
      try {
        auto h = msgpack::unpack(progress_.data.data(), progress_.data.size());
        h.get().convert(data_);
      } catch (const std::exception& e) {
        return stop_now(runtime::make_error(
            runtime::errc::handler_failed,
            "saga '" + stream_ + "': data does not decode: " + e.what()));
      }
    }
    recovering_ = false;
    advance();
    pull_inbox();
    judge_held();
    // What came during recovery, in arrival order.
    auto stashed = std::move(stash_);
    stash_.clear();
    for (auto& call : stashed) call(nullptr);
  }

  // Runs `f(rp)` now, or once the saga has recovered; past the stash
  // limit `rp` gets `stash_overflow`.
  template <class Promise, class F>
  void when_recovered(Promise& rp, F f) {
    if (!recovering_) return f(rp);
    if (stash_.size() >= ctx_.stash_limit) {
      rp.deliver(actors::stash_full("saga '" + stream_ + "'", stash_.size(),
                                    "requests"));
      return;
    }
    stash_.push_back([rp, f = std::move(f)](const caf::error* err) mutable {
      if (err)
        rp.deliver(*err);
      else
        f(rp);
    });
  }

  void stop_now(caf::error err) {
    fail_waiters(err);
    quit(std::move(err));
  }

  void start(data_type data, caf::typed_response_promise<saga_status>& rp) {
    if (progress_.phase != saga_phase::fresh || busy_) {
      if (progress_.phase != saga_phase::fresh) {
        rp.deliver(status());
        return;
      }
      // A start is being persisted: answer once it is.
      if (start_waiters_.size() >= ctx_.stash_limit) {
        rp.deliver(actors::stash_full("saga '" + stream_ + "'",
                                      start_waiters_.size(), "starts"));
        return;
      }
      start_waiters_.push_back(rp);
      return;
    }
    data_ = std::move(data);
    auto now = ctx_.wall_ms();
    saga_started ev;
    ev.data = detail::pack(data_);
    ev.deadline_ms = def_->deadline_at
                         ? std::max<int64_t>(0, def_->deadline_at(data_))
                     : def_->deadline.count() > 0 ? now + def_->deadline.count()
                                                  : 0;
    ev.step_due_ms = due_of(0, now);
    start_waiters_.push_back(rp);
    persist({ev});
  }

  saga_status status() const {
    return saga_status{id_, to_string(progress_.phase), progress_.step,
                       progress_.attempt, progress_.error};
  }

  int64_t due_of(size_t step, int64_t now) const {
    if (step >= def_->steps.size()) return 0;
    auto& st = def_->steps[step];
    if (st.due_at) return std::max<int64_t>(0, st.due_at(data_));
    auto t = st.timeout.count();
    return t > 0 ? now + t : 0;
  }

  // -- driving ----------------------------------------------------------------

  void advance() {
    if (busy_ || in_flight_ || awaiting_) return;
    auto now = ctx_.wall_ms();
    auto& p = progress_;
    if (p.phase == saga_phase::running) {
      if (p.step >= def_->steps.size()) return persist({saga_completed{}});
      arm_deadline(now);
      if (deadline_hit_ || past(p.deadline_ms, now) || past(p.due_ms, now))
        return give_up("deadline exceeded before attempt " +
                       std::to_string(p.attempt + 1));
      if (p.retry_at_ms > now) return arm_retry(p.retry_at_ms - now);
      if (!def_->steps[p.step].action) {
        awaiting_ = true;  // a step that only waits for its event
        return;
      }
      return send(def_->steps[p.step].action, "do");
    }
    if (p.phase == saga_phase::compensating) {
      if (p.step == 0) return persist({saga_aborted{p.error}});
      auto& comp = def_->steps[p.step - 1].compensation;
      if (!comp) return persist({saga_compensation_done{p.step - 1}});
      if (p.retry_at_ms > now) return arm_retry(p.retry_at_ms - now);
      return send(comp, "undo");
    }
  }

  static bool past(int64_t due, int64_t now) { return due > 0 && now >= due; }

  void send(const command_fn<data_type>& fn, const char* kind) {
    in_flight_ = true;
    auto gen = ++reply_gen_;
    // Deterministic per step and direction: every attempt of a step, also
    // after a restart, carries the same id, so the aggregate applies it once.
    auto index = progress_.phase == saga_phase::compensating
                     ? progress_.step - 1
                     : progress_.step;
    auto command_id = stream_ + "/" + std::to_string(index) + "/" + kind;
    fn(this, ctx_.targets, data_, command_id,
       [this, gen](caf::error err) { on_reply(gen, std::move(err)); });
  }

  void on_reply(uint64_t gen, caf::error err) {
    if (gen != reply_gen_ || !in_flight_) return;
    if (busy_) {
      // An ignored delivery is being recorded: take the reply after it.
      parked_reply_.emplace(gen, std::move(err));
      return;
    }
    in_flight_ = false;
    auto& p = progress_;
    auto now = ctx_.wall_ms();
    if (p.phase == saga_phase::running) {
      if (!err && def_->steps[p.step].await) {
        // The command is accepted: its event decides the step.
        if (deadline_hit_ || past(p.deadline_ms, now) || past(p.due_ms, now))
          return give_up("deadline exceeded while waiting for the event");
        awaiting_ = true;
        return;
      }
      if (!err) {
        events evs{saga_step_completed{p.step, due_of(p.step + 1, now)}};
        if (p.step + 1 == def_->steps.size()) evs.push_back(saga_completed{});
        deadline_hit_ = false;
        return persist(std::move(evs));
      }
      auto& policy = def_->steps[p.step].retry;
      auto attempt = p.attempt + 1;
      auto since = failing_since(attempt, now);
      bool again = may_retry(policy, err, attempt, since, now) &&
                   !deadline_hit_ && !past(p.deadline_ms, now) &&
                   !past(p.due_ms, now);
      auto text = runtime::describe(err);
      if (again)
        return persist({saga_step_failed{p.step, attempt, text,
                                         now + delay(policy, attempt), since}});
      return persist({saga_step_failed{p.step, attempt, text, 0, since},
                      saga_compensating{to_compensate(p.step),
                                        "step '" + def_->steps[p.step].name +
                                            "' failed: " + text}});
    }
    if (p.phase != saga_phase::compensating) return;
    auto i = p.step - 1;
    if (!err) return persist({saga_compensation_done{i}});
    auto& policy = def_->steps[i].retry;
    auto attempt = p.attempt + 1;
    auto since = failing_since(attempt, now);
    auto text = runtime::describe(err);
    if (may_retry(policy, err, attempt, since, now))
      return persist({saga_compensation_failed{
          i, attempt, text, now + delay(policy, attempt), since}});
    persist({saga_compensation_failed{i, attempt, text, 0, since},
             saga_needs_attention{i, "compensation of step '" +
                                         def_->steps[i].name +
                                         "' failed: " + text}});
  }

  void give_up(std::string why) {
    auto& p = progress_;
    awaiting_ = false;
    persist({saga_step_failed{p.step, p.attempt, why, 0, p.failing_since_ms},
             saga_compensating{
                 to_compensate(p.step),
                 "step '" + def_->steps[p.step].name + "' failed: " + why}});
  }

  // How many steps to compensate when step `failed` failed for good: the
  // completed ones, and an event-decided step itself (its command may have
  // taken effect).
  uint32_t to_compensate(uint32_t failed) const {
    return failed + (def_->steps[failed].await ? 1 : 0);
  }

  // -- events delivered through the inbox -------------------------------------

  using promises = std::vector<caf::typed_response_promise<bool>>;

  /// Rows pulled from the saga's own inbox at once, at most.
  static constexpr size_t max_pulled = 1000;

  /// A delivered event: its source ("" = the node's journal) and its
  /// position there.
  using event_key = std::pair<std::string, uint64_t>;

  /// An event the saga cannot judge yet, and the requests to answer for it.
  struct held_event {
    /// The event itself (`persistence::encode_event`) if it is not in the
    /// node's journal (its source is not empty).
    std::string event;
    promises waiting;
  };

  /// Requests kept per held event: one per relay that delivers it (in a
  /// cluster each member runs one, so up to 16 members deliver without
  /// displacing each other). A further one takes over from the oldest,
  /// which is then a request its relay gave up on (it asks again only
  /// after its 30 s timeout), so a long hold keeps a bounded number.
  static constexpr size_t max_waiting = 16;

  void deliver(std::string source, uint64_t position, std::string event,
               caf::typed_response_promise<bool>& rp) {
    if (position <= progress_.last_event_of(source)) {
      rp.deliver(true);  // recorded before: a repeat
      return;
    }
    // Held until the saga can judge it, in position order per source; at
    // most `stash_limit` events (the inbox row of each stays: the relay
    // delivers it again).
    event_key key{source, position};
    if (held_.size() >= ctx_.stash_limit && held_.count(key) == 0) {
      rp.deliver(
          actors::stash_full("saga '" + stream_ + "'", held_.size(), "events"));
      return;
    }
    auto& held = held_[key];
    if (held.event.empty()) held.event = std::move(event);
    if (held.waiting.size() >= max_waiting) {
      held.waiting.front().deliver(runtime::make_error(
          runtime::errc::entity_stopped,
          "saga '" + stream_ + "': the event at position " +
              std::to_string(position) + describe_source(source) +
              " was delivered again; the newer delivery gets the answer"));
      held.waiting.erase(held.waiting.begin());
    }
    held.waiting.push_back(rp);
    judge_held();
  }

  static std::string describe_source(const std::string& source) {
    return source.empty() ? std::string{} : " of '" + source + "'";
  }

  // The current step waits for an event.
  bool waiting_step() const {
    auto& p = progress_;
    return p.phase == saga_phase::running && p.step < def_->steps.size() &&
           static_cast<bool>(def_->steps[p.step].await);
  }

  // Whether a delivery can be judged now: not before the start (the event
  // may be for its first step), nor while persisting, nor while running a
  // step that waits for no event (a later step may wait for it). A
  // compensating or finished saga judges at once: no step will wait again.
  bool judge_ready() const {
    if (busy_ || progress_.phase == saga_phase::fresh) return false;
    return progress_.phase != saga_phase::running || waiting_step();
  }

  void judge_held() {
    while (!held_.empty() && judge_ready()) {
      auto first = held_.begin();
      auto key = first->first;
      auto held = std::move(first->second);
      held_.erase(first);
      // A row that cannot be judged stops the rest: they must not overtake
      // it. The relay sends it again and gets the error again.
      if (!judge(key, std::move(held))) return;
    }
  }

  // Reads the event `key` names: from the node's journal, or decoded from
  // the copy its delivery carried.
  caf::expected<persistence::event_envelope> event_of(const event_key& key,
                                                      const std::string& copy) {
    auto& [source, position] = key;
    if (!source.empty()) {
      auto decoded = persistence::decode_event(copy);
      if (!decoded)
        return runtime::to_caf_error(persistence::error{
            persistence::errc::corrupt_record,
            "saga '" + stream_ + "': the event at position " +
                std::to_string(position) + describe_source(source) +
                " in its inbox does not decode (" + decoded.error().message() +
                "); delete that row from table '" + inbox_table<S>() +
                "' to let the later events through"});
      return std::move(*decoded);
    }
    auto found = ctx_.journal->read_all(position, 1);
    if (!found) return runtime::to_caf_error(found.error());
    if (found->empty() || found->front().position != position)
      return runtime::make_error(
          runtime::errc::not_found,
          "saga '" + stream_ + "': its inbox names position " +
              std::to_string(position) +
              ", which holds no event (deleted?); delete that row from "
              "table '" +
              inbox_table<S>() + "' to let the later events through");
    return std::move(found->front());
  }

  // Judges the event `key` names and records the outcome; the held
  // requests are answered once that is persisted. Returns false if the
  // event cannot be read (the requests get the error).
  bool judge(const event_key& key, held_event held) {
    auto& p = progress_;
    auto& [source, position] = key;
    auto& waiting = held.waiting;
    if (position <= p.last_event_of(source)) {
      for (auto& rp : waiting) rp.deliver(true);
      return true;
    }
    auto found = event_of(key, held.event);
    if (!found) {
      for (auto& rp : waiting) rp.deliver(found.error());
      return false;
    }
    auto& env = *found;
    if (waiting_step()) {
      std::optional<caf::error> verdict;
      try {
        verdict = def_->steps[p.step].await(*ctx_.registry, env, data_);
      } catch (const std::exception& e) {
        verdict = runtime::make_error(runtime::errc::handler_failed,
                                      std::string{"await threw: "} + e.what());
      }
      if (verdict) {
        decide(key, env.type, std::move(*verdict), std::move(waiting));
        return true;
      }
    }
    // Recorded, not dropped: it shows in the saga's history, and a
    // redelivery (a replayed router, a relay that restarted) is a repeat.
    for (auto& rp : waiting) delivery_waiters_.push_back(std::move(rp));
    persist({saga_event_ignored{position, p.step, env.type, ignore_reason(),
                                source}});
    return true;
  }

  std::string ignore_reason() const {
    if (waiting_step())
      return "step '" + def_->steps[progress_.step].name +
             "' does not wait for it";
    return std::string{"no step waits: the saga is "} +
           to_string(progress_.phase);
  }

  // The event `key` names decides the waiting step: `verdict` is no
  // error (done) or the error the step failed with.
  void decide(const event_key& key, const std::string& type, caf::error verdict,
              promises waiting) {
    auto& p = progress_;
    // A command reply still out is moot.
    ++reply_gen_;
    in_flight_ = false;
    parked_reply_.reset();
    awaiting_ = false;
    deadline_hit_ = false;
    auto now = ctx_.wall_ms();
    events evs{saga_event_received{key.second, p.step, type, key.first}};
    if (!verdict) {
      evs.push_back(saga_step_completed{p.step, due_of(p.step + 1, now)});
      if (p.step + 1 == def_->steps.size()) evs.push_back(saga_completed{});
    } else {
      auto text = runtime::describe(verdict);
      evs.push_back(saga_step_failed{p.step, p.attempt + 1, text, 0,
                                     failing_since(p.attempt + 1, now)});
      evs.push_back(saga_compensating{
          to_compensate(p.step),
          "step '" + def_->steps[p.step].name + "' failed: " + text});
    }
    for (auto& rp : waiting) delivery_waiters_.push_back(std::move(rp));
    persist(std::move(evs));
  }

  // The rows of this saga already in its inbox (routed before it started,
  // or while the inbox relay was down): held like deliveries, so that the
  // saga judges them as soon as it can, also after a restart, without
  // waiting for the relay. The relay sends them later all the same; the
  // saga answers them as repeats and the relay deletes the rows.
  void pull_inbox() {
    if (progress_.phase == saga_phase::fresh) return;
    std::vector<std::pair<event_key, std::string>> rows;
    auto err = ctx_.journal->read([&](persistence::read_txn& txn) {
      auto n = persistence::table_store::scan_prefix_in(
          txn, inbox_table<S>(), detail::inbox_prefix(id_), max_pulled,
          [&](std::string_view k, std::string_view v) {
            auto parsed = detail::parse_inbox_key(k);
            if (parsed && parsed->saga_id == id_ &&
                parsed->position > progress_.last_event_of(parsed->source))
              rows.emplace_back(
                  event_key{std::move(parsed->source), parsed->position},
                  std::string{v});
            return true;
          });
      return n ? persistence::error{} : n.error();
    });
    if (err) return;  // the relay delivers them
    for (auto& [key, event] : rows)
      held_.try_emplace(std::move(key), held_event{std::move(event), {}});
  }

  void fail_waiters(const caf::error& err) {
    auto stashed = std::move(stash_);
    stash_.clear();
    for (auto& call : stashed) call(&err);
    for (auto& rp : start_waiters_) rp.deliver(err);
    start_waiters_.clear();
    for (auto& rp : delivery_waiters_) rp.deliver(err);
    delivery_waiters_.clear();
    for (auto& entry : held_)
      for (auto& rp : entry.second.waiting) rp.deliver(err);
    held_.clear();
  }

  static bool retryable(const retry_policy& policy, const caf::error& err) {
    return policy.retryable ? policy.retryable(err) : transient_error(err);
  }

  // When the current step's (or compensation's) failing began: now for its
  // first failed attempt; else as recorded (now if recorded before this
  // was kept).
  int64_t failing_since(uint32_t attempt, int64_t now) const {
    if (attempt <= 1 || progress_.failing_since_ms == 0) return now;
    return progress_.failing_since_ms;
  }

  // Whether failed attempt `attempt` is followed by another: the error is
  // retryable, and attempts are left or the time budget is not spent.
  static bool may_retry(const retry_policy& policy, const caf::error& err,
                        uint32_t attempt, int64_t since, int64_t now) {
    if (!retryable(policy, err)) return false;
    if (attempt < policy.max_attempts) return true;
    return policy.keep_transient_for.count() > 0 &&
           now - since < policy.keep_transient_for.count();
  }

  int64_t delay(const retry_policy& policy, uint32_t attempt) {
    auto base = runtime::backoff_delay(policy.backoff, attempt);
    std::uniform_real_distribution<double> f{
        1.0, 1.0 + std::max(policy.backoff.jitter, 0.0)};
    return static_cast<int64_t>(static_cast<double>(base.count()) * f(rng_));
  }

  // An unfinished saga asks its registry to wake it again: when its retry
  // is due, or at once if a command was in flight (it is re-sent with the
  // same command id, so it applies once).
  // A saga waiting for its event is woken by the event's delivery, or when
  // its deadline is due.
  void passivate(caf::actor registry) {
    auto& p = progress_;
    if (!finished(p.phase) && p.phase != saga_phase::fresh) {
      if (ctx_.wake_via)
        if (auto via = ctx_.wake_via->get()) registry = std::move(via);
      auto now = ctx_.wall_ms();
      bool wake = true;
      int64_t wait = 0;
      if (awaiting_) {
        int64_t due = 0;
        for (auto d : {p.due_ms, p.deadline_ms})
          if (d > 0 && (due == 0 || d < due)) due = d;
        wake = due > 0;
        wait = std::max<int64_t>(due - now, 0);
      } else if (p.retry_at_ms > now && !in_flight_) {
        wait = p.retry_at_ms - now;
      }
      if (registry && wake)
        caf::delayed_anon_send(registry, std::chrono::milliseconds{wait},
                               runtime::route_atom::value, id_,
                               caf::make_message(status_atom::value));
    }
    fail_waiters(runtime::make_error(runtime::errc::entity_stopped,
                                     "saga '" + stream_ + "' passivated"));
    quit();
  }

  // -- timers -----------------------------------------------------------------

  // CAF keeps a timer's delay in ns in 64 bits: one of more than about 292
  // years wraps and fires at once. A wait longer than a day is armed a day
  // at a time, and each time the wall clock says whether it is over.
  static constexpr int64_t max_timer_ms = 86'400'000;

  void arm_retry(int64_t ms) {
    retry_partial_ = ms > max_timer_ms;
    delayed_send(this, std::chrono::milliseconds{std::min(ms, max_timer_ms)},
                 saga_retry_atom::value, ++retry_gen_);
  }

  void arm_deadline_timer(int64_t ms) {
    deadline_partial_ = ms > max_timer_ms;
    delayed_send(
        this,
        std::chrono::milliseconds{std::clamp<int64_t>(ms, 0, max_timer_ms)},
        saga_deadline_atom::value, deadline_gen_);
  }

  void arm_deadline(int64_t now) {
    auto& p = progress_;
    int64_t due = 0;
    for (auto d : {p.due_ms, p.deadline_ms})
      if (d > 0 && (due == 0 || d < due)) due = d;
    if (due == armed_due_) return;
    // A new due time (or none) cancels the timer of the last one: the
    // timeout of a completed step must not fail the steps after it.
    ++deadline_gen_;
    armed_due_ = due;
    if (due == 0) return;
    arm_deadline_timer(due - now);
  }

  void on_deadline(uint64_t gen) {
    if (gen != deadline_gen_ || progress_.phase != saga_phase::running) return;
    if (deadline_partial_) {
      auto now = ctx_.wall_ms();
      if (armed_due_ > now) return arm_deadline_timer(armed_due_ - now);
    }
    deadline_hit_ = true;
    armed_due_ = 0;
    if (!busy_ && !in_flight_) {
      ++retry_gen_;  // cancels a pending retry
      give_up("deadline exceeded");
    }
  }

  // -- persistence ------------------------------------------------------------

  void persist(events evs) {
    std::vector<persistence::new_event> batch;
    for (auto& ev : evs) {
      auto encoded = codec_.encode(ev);
      if (!encoded) {
        auto err = runtime::to_caf_error(encoded.error());
        fail_waiters(err);
        return quit(err);
      }
      batch.push_back(std::move(*encoded));
    }
    busy_ = true;
    pending_ = std::move(evs);
    auto slot = std::make_shared<persistence::error>();
    slot_ = slot;
    core_.append(this, std::move(batch), saga_persisted_atom::value, ++ticket_,
                 [slot](persistence::expected<persistence::append_result> r) {
                   if (!r) *slot = r.error();
                 });
  }

  void on_persisted(uint64_t ticket) {
    if (ticket != ticket_ || !slot_) return;
    auto err = std::move(*slot_);
    slot_.reset();
    busy_ = false;
    if (err) {
      // Our view may be ahead of the journal: stop; the registry restarts
      // the saga, which recovers from its stream.
      auto e = runtime::to_caf_error(err);
      fail_waiters(e);
      return quit(e);
    }
    bool started = false;
    for (auto& ev : pending_) {
      started = started || std::holds_alternative<saga_started>(ev);
      progress_.apply(ev);
    }
    core_.applied(pending_.size());
    pending_.clear();
    maybe_snapshot();
    for (auto& rp : start_waiters_) rp.deliver(status());
    start_waiters_.clear();
    for (auto& rp : delivery_waiters_) rp.deliver(true);
    delivery_waiters_.clear();
    if (parked_reply_) {
      auto [gen, reply] = std::move(*parked_reply_);
      parked_reply_.reset();
      on_reply(gen, std::move(reply));
    }
    if (started) pull_inbox();
    // The step's command goes out before held events are judged: an event
    // decides a step whether or not its command has been answered, but
    // the command must have been sent.
    advance();
    judge_held();
    expire_wait();
  }

  // Saves the progress as a snapshot once `snapshot_every` more events
  // were persisted since the last one (saga_context::snapshot_every).
  void maybe_snapshot() {
    if (!core_.snapshot_due(ctx_.snapshot_every)) return;
    // Not registered (register_types): no snapshot, they are an option.
    core_.save_snapshot(progress_, {}, 1);
  }

  // A deadline that passed while the saga was persisting, with its step
  // waiting for an event: the events held meanwhile were judged first (one
  // of them may have decided the step); no other will come in time.
  void expire_wait() {
    if (awaiting_ && deadline_hit_ && !busy_ && !in_flight_ &&
        progress_.phase == saga_phase::running)
      give_up("deadline exceeded");
  }

  saga_context ctx_;
  std::string id_;
  actors::persistent_core core_;
  const std::string& stream_;
  std::shared_ptr<const definition<data_type>> def_;
  actors::variant_codec<saga_event> codec_;
  saga_progress progress_;
  data_type data_{};
  // Replaying the stream (recover_step); requests wait in `stash_`.
  bool recovering_ = true;
  std::vector<std::function<void(const caf::error*)>> stash_;
  bool busy_ = false;
  bool in_flight_ = false;
  /// The current step's command is accepted; its event is awaited.
  bool awaiting_ = false;
  bool deadline_hit_ = false;
  int64_t armed_due_ = 0;
  // The armed retry or deadline timer covers only a part of its wait
  // (max_timer_ms).
  bool retry_partial_ = false;
  bool deadline_partial_ = false;
  uint64_t reply_gen_ = 0;
  uint64_t retry_gen_ = 0;
  uint64_t deadline_gen_ = 0;
  uint64_t ticket_ = 0;
  events pending_;
  std::shared_ptr<persistence::error> slot_;
  std::vector<caf::typed_response_promise<saga_status>> start_waiters_;
  /// Deliveries being recorded (decided a step or ignored), answered once
  /// that is persisted.
  promises delivery_waiters_;
  /// Events the saga cannot judge yet (see `judge_ready`), by source and
  /// position, and the requests to answer for each (none for a row the saga
  /// pulled from its inbox itself). The inbox row of each is the durable
  /// hold.
  std::map<event_key, held_event> held_;
  /// The reply of a command that came while an ignored delivery was being
  /// recorded.
  std::optional<std::pair<uint64_t, caf::error>> parked_reply_;
  std::mt19937_64 rng_;
};

namespace detail {

// A saga registry whose sagas get their steps from `steps()`.
template <class S, class Steps>
caf::actor spawn_saga_registry_with(caf::actor_system& sys, saga_context ctx,
                                    runtime::registry_options options,
                                    Steps steps) {
  return runtime::spawn_entity_registry(
      sys,
      [ctx, steps](caf::actor_system& s, const std::string& id) {
        return s.spawn<saga_actor<S>>(ctx, id, steps());
      },
      std::move(options));
}

}  // namespace detail

/// Spawns the registry of saga type `S`: `(route_atom, saga_id,
/// caf::make_message(start_atom, data))` starts saga `saga_id` once;
/// sagas are activated, passivated and restarted like aggregates. Register
/// the saga events (`register_types`) first.
/// The saga's steps are `def`, a value built by the service (e.g. with
/// timeouts from its options): every saga of the registry shares it.
template <class S>
caf::actor spawn_saga_registry(caf::actor_system& sys, saga_context ctx,
                               runtime::registry_options options,
                               definition<typename S::data> def) {
  auto shared =
      std::make_shared<const definition<typename S::data>>(std::move(def));
  return detail::spawn_saga_registry_with<S>(
      sys, std::move(ctx), std::move(options), [shared] { return shared; });
}

/// As above, with the steps of `S::define()`, called for each saga as it
/// is activated.
template <class S>
caf::actor spawn_saga_registry(caf::actor_system& sys, saga_context ctx,
                               runtime::registry_options options) {
  return detail::spawn_saga_registry_with<S>(
      sys, std::move(ctx), std::move(options), [] {
        return std::make_shared<const definition<typename S::data>>(
            S::define());
      });
}

}  // namespace mnemo::sagas
