#pragma once

// How the library calls an aggregate type `A` (see aggregate.hpp): each
// function below uses what `A` declares and falls back to a default, so an
// aggregate writes only what is its own.
//
// - deciding: `A::handle(const state&, const command&)`, or else one
//   `static effect decide(const state&, const C&)` per command type `C`;
// - evolving: `A::apply(state, const event&)` returning the new state, or
//   else, per event type `E`, `static void evolve(state&, const E&)` or a
//   member `void apply(const E&)` of the state (as Orleans' journaled
//   grain states have);
// - its stored names: `A::register_types(event_registry&)`, or else
//   `static constexpr const char* event_names[]` (one per alternative of
//   `event`, in the variant's order) and `state_name` (for snapshots);
// - its reply: `effect::persist(events)` without a reply function replies
//   with `A::reply_of(const state&)` of the state after the events.
//
// Names are written to the journal: never rename or reorder them.

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "mnemo/persistence/event_registry.hpp"

namespace mnemo::actors {

namespace detail {

template <class A, class = void>
struct has_handle : std::false_type {};

template <class A>
struct has_handle<A, std::void_t<decltype(A::handle(
                         std::declval<const typename A::state&>(),
                         std::declval<const typename A::command&>()))>>
    : std::true_type {};

template <class A, class = void>
struct has_apply : std::false_type {};

template <class A>
struct has_apply<A, std::void_t<decltype(A::apply(
                        std::declval<typename A::state>(),
                        std::declval<const typename A::event&>()))>>
    : std::true_type {};

template <class A, class = void>
struct has_register_types : std::false_type {};

template <class A>
struct has_register_types<
    A, std::void_t<decltype(A::register_types(
           std::declval<persistence::event_registry&>()))>> : std::true_type {
};

template <class A, class = void>
struct has_state_name : std::false_type {};

template <class A>
struct has_state_name<A, std::void_t<decltype(A::state_name)>>
    : std::true_type {};

template <class State, class E, class = void>
struct has_member_apply : std::false_type {};

template <class State, class E>
struct has_member_apply<State, E,
                        std::void_t<decltype(std::declval<State&>().apply(
                            std::declval<const E&>()))>> : std::true_type {};

template <class A, class Variant, size_t... Is>
void add_events(persistence::event_registry& types,
                std::index_sequence<Is...>) {
  (types.template add<std::variant_alternative_t<Is, Variant>>(
       A::event_names[Is]),
   ...);
}

}  // namespace detail

/// The effect of command `cmd` on state `s`.
template <class A>
auto decide(const typename A::state& s, const typename A::command& cmd) {
  if constexpr (detail::has_handle<A>::value) {
    return A::handle(s, cmd);
  } else {
    return std::visit([&s](const auto& c) { return A::decide(s, c); }, cmd);
  }
}

/// The state after event `ev`.
template <class A>
typename A::state evolve(typename A::state s, const typename A::event& ev) {
  if constexpr (detail::has_apply<A>::value) {
    return A::apply(std::move(s), ev);
  } else {
    std::visit(
        [&s](const auto& e) {
          using E = std::decay_t<decltype(e)>;
          if constexpr (detail::has_member_apply<typename A::state, E>::value)
            s.apply(e);
          else
            A::evolve(s, e);
        },
        ev);
    return s;
  }
}

/// Registers the event types of `A` (and its state, for snapshots) under
/// their stored names.
template <class A>
void register_types(persistence::event_registry& types) {
  if constexpr (detail::has_register_types<A>::value) {
    A::register_types(types);
  } else {
    using event = typename A::event;
    constexpr auto n = std::variant_size_v<event>;
    static_assert(std::extent_v<decltype(A::event_names)> == n,
                  "event_names needs one name per alternative of event");
    detail::add_events<A, event>(types, std::make_index_sequence<n>{});
    if constexpr (detail::has_state_name<A>::value)
      types.template add<typename A::state>(A::state_name);
  }
}

}  // namespace mnemo::actors
