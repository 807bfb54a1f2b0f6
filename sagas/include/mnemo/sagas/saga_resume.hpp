#pragma once

// Resuming the unfinished sagas of a type after a restart (included by
// saga.hpp).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>

namespace mnemo::sagas {

namespace detail {

/// Returns the last event of saga stream `stream` (whose highest sequence
/// is `highest`) that is not an ignored delivery, or nothing if it has
/// none: that event says where the saga stands, since ignored deliveries
/// may follow anything, also the end of the saga. Reads backwards in
/// chunks. Errors: as `journal::read_stream` and `event_registry::decode`.
inline persistence::expected<std::optional<saga_event>> last_progress_event(
    const persistence::journal& j,
    const actors::variant_codec<saga_event>& codec, const std::string& stream,
    uint64_t highest) {
  constexpr uint64_t chunk = 64;
  for (uint64_t to = highest; to > 0;) {
    uint64_t from = to > chunk ? to - chunk + 1 : 1;
    auto evs = j.read_stream(stream, from, to, chunk);
    if (!evs) return evs.error();
    for (auto i = evs->rbegin(); i != evs->rend(); ++i) {
      auto ev = codec.decode(*i);
      if (!ev) return ev.error();
      if (!std::holds_alternative<saga_event_ignored>(*ev))
        return std::optional<saga_event>{std::move(*ev)};
    }
    to = from - 1;
  }
  return std::optional<saga_event>{};
}

}  // namespace detail

/// Activates every unfinished saga of type `S` in `j` through `registry`
/// (after a restart), so that each resumes where it stood. Scans the saga
/// streams of `S`; returns how many it activated. A saga whose last events
/// are ignored deliveries stands where the event before them says.
/// Errors: as `journal::list_streams`, `journal::read_stream` and
/// `event_registry::decode`. With `only`, just the sagas whose id it
/// accepts (e.g. those of a shard this member came to lead).
template <class S>
persistence::expected<size_t> resume_unfinished(
    const persistence::journal& j, const persistence::event_registry& types,
    const caf::actor& registry,
    const std::function<bool(const std::string& id)>& only = {}) {
  auto prefix = saga_stream<S>("");
  actors::variant_codec<saga_event> codec{types};
  size_t resumed = 0;
  std::string after = prefix;
  for (;;) {
    auto heads = j.list_streams(after, 1000);
    if (!heads) return heads.error();
    for (auto& h : *heads) {
      if (h.stream_id.compare(0, prefix.size(), prefix) != 0) return resumed;
      after = h.stream_id;
      if (only && !only(h.stream_id.substr(prefix.size()))) continue;
      auto last = detail::last_progress_event(j, codec, h.stream_id,
                                              h.highest_sequence);
      if (!last) return last.error();
      if (!*last) continue;
      auto& ev = **last;
      if (std::holds_alternative<saga_completed>(ev) ||
          std::holds_alternative<saga_aborted>(ev) ||
          std::holds_alternative<saga_needs_attention>(ev))
        continue;
      caf::anon_send(registry, runtime::route_atom::value,
                     h.stream_id.substr(prefix.size()),
                     caf::make_message(status_atom::value));
      ++resumed;
    }
    if (heads->size() < 1000) return resumed;
  }
}

}  // namespace mnemo::sagas
