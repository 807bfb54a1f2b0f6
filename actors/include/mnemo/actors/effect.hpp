#pragma once

#include <functional>
#include <utility>
#include <vector>

#include <caf/error.hpp>

namespace mnemo::actors {

/// What a command handler decides, for aggregate type `A` (see
/// `aggregate.hpp`): persist events then reply, reply without persisting,
/// reject with an error, or reply and stop.
template <class A>
class effect {
 public:
  using state_type = typename A::state;
  using event_type = typename A::event;
  using reply_type = typename A::reply;
  using reply_function = std::function<reply_type(const state_type&)>;

  enum class kind { persist, respond, reject, stop };

  /// Persist `events` atomically (one journal batch); once durable, apply
  /// them and reply with `reply(new_state)`. Precondition: non-empty.
  static effect persist(std::vector<event_type> events, reply_function reply) {
    effect e{kind::persist};
    e.events_ = std::move(events);
    e.reply_fn_ = std::move(reply);
    return e;
  }

  /// Persist one event, then reply with `reply(new_state)`.
  static effect persist(event_type event, reply_function reply) {
    std::vector<event_type> events;
    events.push_back(std::move(event));
    return persist(std::move(events), std::move(reply));
  }

  /// Reply with `value`; persist nothing.
  static effect respond(reply_type value) {
    effect e{kind::respond};
    e.reply_ = std::move(value);
    return e;
  }

  /// Answer the command with `err`; persist nothing.
  static effect reject(caf::error err) {
    effect e{kind::reject};
    e.error_ = std::move(err);
    return e;
  }

  /// Reply with `value`, then stop the aggregate (it recovers on next use).
  static effect stop(reply_type value) {
    effect e{kind::stop};
    e.reply_ = std::move(value);
    return e;
  }

  kind what() const noexcept { return kind_; }
  std::vector<event_type>& events() noexcept { return events_; }
  const reply_function& reply_function_of() const noexcept { return reply_fn_; }
  reply_type& reply() noexcept { return reply_; }
  caf::error& error() noexcept { return error_; }

 private:
  explicit effect(kind k) : kind_(k) {}
  kind kind_;
  std::vector<event_type> events_;
  reply_function reply_fn_;
  reply_type reply_{};
  caf::error error_;
};

}  // namespace mnemo::actors
