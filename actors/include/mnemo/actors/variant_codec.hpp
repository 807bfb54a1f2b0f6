#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mnemo/persistence/event_registry.hpp"

namespace mnemo::actors {

/// Encodes and decodes an event variant through an `event_registry`: each
/// alternative is a registered event type.
template <class Variant>
class variant_codec;

template <class... Ts>
class variant_codec<std::variant<Ts...>> {
 public:
  using value_type = std::variant<Ts...>;

  explicit variant_codec(const persistence::event_registry& types)
      : types_(&types) {}

  /// Encodes the held alternative. Errors: as `event_registry::to_event`.
  persistence::expected<persistence::new_event> encode(
      const value_type& x) const {
    return std::visit([this](const auto& e) { return types_->to_event(e); }, x);
  }

  /// Decodes `env` into the alternative registered under `env.type`.
  /// Errors: `unknown_event_type` if no alternative has that name; else as
  /// `event_registry::decode`.
  persistence::expected<value_type> decode(
      const persistence::event_envelope& env) const {
    return decode_at<0>(env);
  }

  /// Returns whether every alternative is registered; names the first one
  /// that is not in `missing`.
  bool complete(std::string& missing) const {
    bool ok = true;
    ((ok = ok && check<Ts>(missing)), ...);
    return ok;
  }

 private:
  template <class T>
  bool check(std::string& missing) const {
    if (types_->name_of<T>() != nullptr) return true;
    missing = typeid(T).name();
    return false;
  }

  template <size_t I>
  persistence::expected<value_type> decode_at(
      const persistence::event_envelope& env) const {
    if constexpr (I < sizeof...(Ts)) {
      using alt = std::variant_alternative_t<I, value_type>;
      auto name = types_->name_of<alt>();
      if (name != nullptr && *name == env.type) {
        auto x = types_->decode<alt>(env);
        if (!x) return std::move(x).error();
        return value_type{std::in_place_index<I>, std::move(*x)};
      }
      return decode_at<I + 1>(env);
    } else {
      return persistence::error{persistence::errc::unknown_event_type,
                                "event type '" + env.type + "' (stream '" +
                                    env.stream_id + "', sequence " +
                                    std::to_string(env.sequence) +
                                    ") is not an event of this aggregate"};
    }
  }

  const persistence::event_registry* types_;
};

}  // namespace mnemo::actors
