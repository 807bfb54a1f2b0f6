#pragma once

#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <caf/error.hpp>

namespace mnemo::actors {

namespace detail {

template <class A, class = void>
struct has_reply_of : std::false_type {};

template <class A>
struct has_reply_of<A, std::void_t<decltype(A::reply_of(
                           std::declval<const typename A::state&>()))>>
    : std::true_type {};

}  // namespace detail

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

  /// Persist `events`, then reply with `A::reply_of(new_state)`.
  static effect persist(std::vector<event_type> events) {
    return persist(std::move(events), default_reply());
  }

  /// Persist one event, then reply with `A::reply_of(new_state)`.
  static effect persist(event_type event) {
    return persist(std::move(event), default_reply());
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

  /// Answer the command with code `code` of an error enum (declared with
  /// MNEMO_ERROR_ENUM) and `why`; persist nothing.
  template <class Enum, class = std::enable_if_t<std::is_enum<Enum>::value>>
  static effect reject(Enum code, std::string why) {
    return reject(make_error(code, std::move(why)));
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

  static reply_function default_reply() {
    static_assert(detail::has_reply_of<A>::value,
                  "persist without a reply function needs "
                  "`static reply reply_of(const state&)` in the aggregate");
    return [](const state_type& s) { return A::reply_of(s); };
  }
  kind kind_;
  std::vector<event_type> events_;
  reply_function reply_fn_;
  reply_type reply_{};
  caf::error error_;
};

}  // namespace mnemo::actors
