#pragma once

// A persistent aggregate: an actor that recovers from snapshot + events,
// handles commands into effects, persists events through the journal's
// group commit, and stashes commands while it is busy.
//
// An aggregate type `A` declares:
//   using state = ...;              // default-constructible, msgpack map,
//                                   // registered for snapshots
//   using command = std::variant<...>;
//   using event = std::variant<...>;   // each alternative registered
//   using reply = ...;              // msgpack-encodable, has `inspect`
//   static constexpr const char* type_name = "account";
//   static effect<A> decide(const state&, const C&);  // one per command
//   static void evolve(state&, const E&);             // one per event, pure
//   static constexpr const char* event_names[] = {...};  // stored names
//   static constexpr const char* state_name = "...";     // for snapshots
//   static reply reply_of(const state&);   // optional: persist's reply
//   static void on_recovered(const state&);        // optional hook
// (or `handle`, `apply` and `register_types` written out: see
// aggregate_traits.hpp).
// Commands, replies and states travel in CAF messages: declare each with
// MNEMO_MESSAGE (mnemo/runtime/message.hpp), which gives it msgpack and
// CAF's `inspect` in one (mnemo/runtime/variant_inspect.hpp covers the
// std::variant).

#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <chrono>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/typed_response_promise.hpp>

#include "mnemo/actors/aggregate_context.hpp"
#include "mnemo/actors/aggregate_traits.hpp"
#include "mnemo/actors/effect.hpp"
#include "mnemo/actors/persistent_core.hpp"
#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/variant_inspect.hpp"

namespace mnemo::actors {

namespace detail {

template <class A, class = void>
struct has_on_recovered : std::false_type {};

template <class A>
struct has_on_recovered<A, std::void_t<decltype(A::on_recovered(
                               std::declval<const typename A::state&>()))>>
    : std::true_type {};

/// Metadata keys written by aggregates.
constexpr const char* command_key = "mnemo.command";
constexpr const char* reply_key = "mnemo.reply";
constexpr const char* processed_key = "mnemo.processed";

template <class T>
std::string pack_to_string(const T& x) {
  msgpack::sbuffer buf{128};
  msgpack::pack(buf, x);
  return std::string{buf.data(), buf.size()};
}

}  // namespace detail

/// Returns the stream id of aggregate `A` with id `id`: "<type_name>-<id>".
template <class A>
std::string stream_of(const std::string& id) {
  return std::string{A::type_name} + "-" + id;
}

/// The actor of one aggregate instance. Spawn with
/// `sys.spawn<aggregate_actor<A>>(context, id)`.
template <class A>
class aggregate_actor : public caf::event_based_actor {
 public:
  using state_type = typename A::state;
  using event_type = typename A::event;
  using command_type = typename A::command;
  using reply_type = typename A::reply;
  using reply_promise = caf::typed_response_promise<reply_type>;

  aggregate_actor(caf::actor_config& cfg, aggregate_context ctx, std::string id)
      : caf::event_based_actor(cfg),
        core_({ctx.journal, ctx.registry, ctx.completions}, stream_of<A>(id)),
        options_(ctx.options),
        metrics_(std::move(ctx.metrics)) {}

  const char* name() const override { return A::type_name; }

  caf::behavior make_behavior() override {
    set_exit_handler([this](caf::exit_msg& msg) {
      stop_with(
          runtime::make_error(runtime::errc::entity_stopped,
                              "aggregate '" + core_.stream() + "' stopped"),
          msg.reason);
    });
    start_recovery();
    return {
        [this](command_atom, std::string& id,
               command_type& cmd) -> caf::result<reply_type> {
          return on_command(std::move(id), std::move(cmd));
        },
        [this](caf::get_atom) -> caf::result<state_type> {
          return on_get(false);
        },
        [this](state_atom) -> caf::result<state_type, uint64_t> {
          return on_get(true);
        },
        [this](persisted_atom, uint64_t ticket) { on_persisted(ticket); },
        [this](runtime::passivate_atom) {
          passivating_ = true;
          drain_stash();
        },
        [this](recover_atom) { recover_step(); },
    };
  }

 private:
  struct pending {
    std::string id;
    command_type cmd;
    reply_promise rp;
  };

  // A command whose events the journal is appending. The journal's callback
  // shares it and only stores `result`, before it posts `persisted_atom`;
  // the actor reads `result` only once that message has arrived.
  struct in_flight {
    pending cmd;
    state_type next_state;
    reply_type reply;
    uint64_t events = 0;
    std::string reply_bytes;
    uint64_t ticket = 0;  // the version the append expects
    std::optional<persistence::expected<persistence::append_result>> result;
  };

  struct state_waiter {
    caf::response_promise rp;
    bool versioned;
  };

  // What an aggregate holds only while it recovers or is busy.
  struct waiting {
    std::list<pending> commands;        // stashed, oldest first
    std::vector<state_waiter> readers;  // `get`s during recovery
    std::chrono::steady_clock::time_point recovery_start;
  };

  // The replies of the last `processed_window` commands that had an id.
  struct idempotency_window {
    std::unordered_map<std::string, std::string> replies;
    std::deque<std::string> order;  // oldest first
  };

  // -- commands ---------------------------------------------------------------

  caf::result<reply_type> on_command(std::string id, command_type cmd) {
    auto rp = make_response_promise<reply_type>();
    if (recovering_ || flight_) {
      if (stashed() >= options_.stash_limit) {
        rp.deliver(stash_full("aggregate '" + core_.stream() + "'", stashed(),
                              "commands"));
        return rp;
      }
      waiting_now().commands.push_back(
          pending{std::move(id), std::move(cmd), rp});
      return rp;
    }
    execute(pending{std::move(id), std::move(cmd), rp});
    return rp;
  }

  caf::response_promise on_get(bool versioned) {
    auto rp = make_response_promise();
    if (recovering_)
      waiting_now().readers.push_back({rp, versioned});
    else
      deliver_state(rp, versioned);
    return rp;
  }

  void deliver_state(caf::response_promise& rp, bool versioned) {
    if (versioned)
      rp.deliver(state_, core_.version());
    else
      rp.deliver(state_);
  }

  void execute(pending p) {
    if (!p.id.empty() && processed_) {
      auto& replies = processed_->replies;
      if (auto i = replies.find(p.id); i != replies.end()) {
        count(&aggregate_metrics::duplicate);
        deliver_stored(p.rp, i->second);
        return;
      }
    }
    std::optional<effect<A>> eff;
    try {
      eff.emplace(decide<A>(state_, p.cmd));
    } catch (const std::exception& e) {
      return handler_failed(p.rp, e.what());
    }
    switch (eff->what()) {
      case effect<A>::kind::respond:
        count(&aggregate_metrics::accepted);
        p.rp.deliver(std::move(eff->reply()));
        return;
      case effect<A>::kind::reject:
        count(&aggregate_metrics::rejected);
        p.rp.deliver(std::move(eff->error()));
        return;
      case effect<A>::kind::stop:
        count(&aggregate_metrics::accepted);
        p.rp.deliver(std::move(eff->reply()));
        stop_with(caf::error{}, caf::exit_reason::normal);
        return;
      case effect<A>::kind::persist:
        persist(std::move(p), *eff);
        return;
    }
  }

  void persist(pending p, effect<A>& eff) {
    in_flight f{std::move(p), state_, reply_type{}, 0, {}, core_.version(), {}};
    try {
      for (auto& ev : eff.events())
        f.next_state = evolve<A>(std::move(f.next_state), ev);
      f.reply = eff.reply_function_of()(f.next_state);
    } catch (const std::exception& e) {
      return handler_failed(f.cmd.rp, e.what());
    }
    std::vector<persistence::new_event> batch;
    for (auto& ev : eff.events()) {
      auto encoded = codec().encode(ev);
      if (!encoded) {
        f.cmd.rp.deliver(runtime::to_caf_error(encoded.error()));
        return;
      }
      if (!f.cmd.id.empty()) encoded->metadata[detail::command_key] = f.cmd.id;
      batch.push_back(std::move(*encoded));
    }
    if (batch.empty()) {
      f.cmd.rp.deliver(runtime::make_error(runtime::errc::invalid_argument,
                                           "persist effect without events"));
      return;
    }
    if (!f.cmd.id.empty()) {
      f.reply_bytes = detail::pack_to_string(f.reply);
      batch.back().metadata[detail::reply_key] = f.reply_bytes;
    }
    f.events = batch.size();
    // One block for the command and the journal's answer (an idle
    // aggregate keeps only the pointer).
    flight_ = std::make_shared<in_flight>(std::move(f));
    auto flight = flight_;
    auto ticket = flight->ticket;
    core_.append(this, std::move(batch), persisted_atom::value, ticket,
                 [flight](persistence::expected<persistence::append_result> r) {
                   flight->result.emplace(std::move(r));
                 });
  }

  void on_persisted(uint64_t ticket) {
    if (!flight_ || ticket != flight_->ticket || !flight_->result) return;
    auto f = std::move(flight_);
    auto res = std::move(*f->result);
    if (!res) {
      // The state may now be ahead of disk or behind it: stop and let the
      // supervisor recover from the journal.
      auto err = runtime::to_caf_error(res.error());
      count(&aggregate_metrics::failed);
      f->cmd.rp.deliver(err);
      // A replicated shard that is not (or no longer) led here is no crash
      // of this entity: it stops normally, so that the restart intensity
      // does not block it once its shard is led here again.
      auto code = res.error().code();
      bool leadership = code == persistence::errc::not_leader ||
                        code == persistence::errc::stale_epoch;
      stop_with(err, leadership ? caf::error{caf::exit_reason::normal} : err);
      return;
    }
    count(&aggregate_metrics::accepted);
    state_ = std::move(f->next_state);
    core_.applied(f->events);
    if (!f->cmd.id.empty()) remember(f->cmd.id, std::move(f->reply_bytes));
    f->cmd.rp.deliver(std::move(f->reply));
    maybe_snapshot();
    drain_stash();
  }

  void drain_stash() {
    while (!stopped_ && !recovering_ && !flight_ && stashed() > 0) {
      auto p = std::move(waiting_->commands.front());
      waiting_->commands.pop_front();
      execute(std::move(p));
    }
    // Readers are answered when recovery ends, so empty means nothing waits.
    if (!recovering_ && stashed() == 0) waiting_.reset();
    // Passivation waits for started work: a pending write and the stash.
    if (passivating_ && !recovering_ && !flight_ && stashed() == 0)
      stop_with(caf::error{}, caf::exit_reason::normal);
  }

  size_t stashed() const { return waiting_ ? waiting_->commands.size() : 0; }

  waiting& waiting_now() {
    if (!waiting_) waiting_ = std::make_unique<waiting>();
    return *waiting_;
  }

  // Stateless: made when needed rather than kept in every aggregate.
  variant_codec<event_type> codec() const {
    return variant_codec<event_type>{*core_.client().registry};
  }

  void deliver_stored(reply_promise& rp, const std::string& bytes) {
    reply_type value{};
    try {
      auto handle = msgpack::unpack(bytes.data(), bytes.size());
      handle.get().convert(value);
    } catch (const std::exception& e) {
      rp.deliver(runtime::make_error(runtime::errc::handler_failed,
                                     "stored reply of aggregate '" +
                                         core_.stream() +
                                         "' is unreadable: " + e.what()));
      return;
    }
    rp.deliver(std::move(value));
  }

  void remember(const std::string& id, std::string reply_bytes) {
    if (!processed_) processed_ = std::make_unique<idempotency_window>();
    auto& w = *processed_;
    if (w.replies.emplace(id, std::move(reply_bytes)).second)
      w.order.push_back(id);
    while (w.order.size() > options_.processed_window) {
      w.replies.erase(w.order.front());
      w.order.pop_front();
    }
  }

  void count(runtime::metric_counter* aggregate_metrics::*which) {
    if (metrics_)
      if (auto* c = (*metrics_).*which) c->inc();
  }

  void handler_failed(reply_promise& rp, const char* what) {
    count(&aggregate_metrics::failed);
    auto err = runtime::make_error(
        runtime::errc::handler_failed,
        "command handler of '" + core_.stream() + "' threw: " + what);
    rp.deliver(err);
    stop_with(err, err);
  }

  // -- recovery ---------------------------------------------------------------

  void start_recovery() {
    if (metrics_)
      waiting_now().recovery_start = std::chrono::steady_clock::now();
    std::string missing;
    if (!codec().complete(missing))
      return stop_with_now(runtime::make_error(
          runtime::errc::invalid_argument,
          "event type " + missing + " of aggregate '" +
              std::string{A::type_name} + "' is not registered"));
    persistence::event_metadata meta;
    auto found = core_.load_snapshot(state_, &meta);
    if (!found) return stop_with_now(std::move(found.error()));
    if (*found) restore_processed(meta);
    caf::anon_send(caf::actor_cast<caf::actor>(this), recover_atom::value);
  }

  void restore_processed(const persistence::event_metadata& meta) {
    auto i = meta.find(detail::processed_key);
    if (i == meta.end()) return;
    try {
      auto handle = msgpack::unpack(i->second.data(), i->second.size());
      std::vector<std::pair<std::string, std::string>> entries;
      handle.get().convert(entries);
      for (auto& [id, bytes] : entries) remember(id, std::move(bytes));
    } catch (const std::exception&) {
      // An unreadable window only weakens idempotency for old commands;
      // the state itself was verified by its checksum.
    }
  }

  void recover_step() {
    if (!recovering_ || stopped_) return;
    auto more = core_.replay_chunk(
        options_.recovery_chunk,
        [this](const persistence::event_envelope& env) -> caf::error {
          auto ev = codec().decode(env);
          if (!ev) return runtime::to_caf_error(ev.error());
          try {
            state_ = evolve<A>(std::move(state_), *ev);
          } catch (const std::exception& e) {
            return runtime::make_error(
                runtime::errc::handler_failed,
                "event handler of '" + core_.stream() + "' threw at sequence " +
                    std::to_string(env.sequence) + ": " + e.what());
          }
          auto cmd = env.metadata.find(detail::command_key);
          auto reply = env.metadata.find(detail::reply_key);
          if (cmd != env.metadata.end() && reply != env.metadata.end())
            remember(cmd->second, reply->second);
          return {};
        });
    if (!more) return stop_with_now(std::move(more.error()));
    if (*more) {
      caf::anon_send(caf::actor_cast<caf::actor>(this), recover_atom::value);
      return;
    }
    recovering_ = false;
    // With metrics, start_recovery made `waiting_`; only drain_stash drops it
    // once recovery is over.
    if (metrics_ && metrics_->recovery_seconds && waiting_)
      metrics_->recovery_seconds->observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                        waiting_->recovery_start)
              .count());
    if constexpr (detail::has_on_recovered<A>::value) A::on_recovered(state_);
    if (waiting_) {
      auto readers = std::move(waiting_->readers);
      for (auto& w : readers) deliver_state(w.rp, w.versioned);
    }
    drain_stash();
  }

  // -- snapshots --------------------------------------------------------------

  void maybe_snapshot() {
    auto every = options_.snapshot_every;
    if (!core_.snapshot_due(every)) return;
    std::vector<std::pair<std::string, std::string>> window;
    if (processed_)
      for (auto& id : processed_->order)
        window.emplace_back(id, processed_->replies.at(id));
    persistence::event_metadata meta;
    meta[detail::processed_key] = detail::pack_to_string(window);
    auto version = core_.version();
    auto keep = options_.snapshot_keep;
    uint64_t delete_to = 0;
    if (options_.delete_events_on_snapshot && keep > 0 &&
        version > (keep - 1) * every)
      delete_to = version - (keep - 1) * every;
    // Unregistered state: no snapshot (they are an optimisation).
    core_.save_snapshot(state_, std::move(meta), keep, delete_to);
  }

  // -- stopping ---------------------------------------------------------------

  /// Answers every waiting caller with `err` (or `entity_stopped`), then
  /// quits with `reason`.
  void stop_with(caf::error err, caf::error reason) {
    if (stopped_) return;
    stopped_ = true;
    auto fail =
        err ? err
            : runtime::make_error(runtime::errc::entity_stopped,
                                  "aggregate '" + core_.stream() + "' stopped");
    if (flight_) flight_->cmd.rp.deliver(fail);
    flight_.reset();
    if (waiting_) {
      for (auto& p : waiting_->commands) p.rp.deliver(fail);
      for (auto& w : waiting_->readers) w.rp.deliver(fail);
      waiting_.reset();
    }
    quit(std::move(reason));
  }

  void stop_with_now(caf::error err) { stop_with(err, err); }

  persistent_core core_;
  aggregate_options options_;
  std::shared_ptr<const aggregate_metrics> metrics_;
  state_type state_{};
  bool recovering_ = true;
  bool stopped_ = false;
  bool passivating_ = false;
  // Most aggregates are idle most of the time, so what only a recovering or
  // busy one needs sits behind pointers that are null while idle. The actor
  // and CAF's 64-byte control block are one heap block, and CAF's base class
  // alone is 1016 bytes: with an 8-byte state this class is 1200 bytes and
  // the block fits jemalloc's 1280-byte size class; 17 bytes more and it
  // takes 1536 (actors_bench reports sizeof_actor and actor_storage_bytes).
  std::unique_ptr<waiting> waiting_;               // null: no stash, no readers
  std::shared_ptr<in_flight> flight_;              // null: no append under way
  std::unique_ptr<idempotency_window> processed_;  // null: no ids yet
};

}  // namespace mnemo::actors
