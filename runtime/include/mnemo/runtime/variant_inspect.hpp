#pragma once

// CAF 0.17 has no `inspect` for std::variant. This overload lets variants
// (e.g. an aggregate's command type) travel in CAF messages and print with
// deep_to_string. On the wire: the alternative's index (u8), then its value.

#include <cstdint>
#include <utility>
#include <variant>

#include <caf/error.hpp>
#include <caf/meta/omittable.hpp>
#include <caf/sec.hpp>

namespace caf {

namespace mnemo_detail {

template <size_t I, class Inspector, class... Ts>
error load_alternative(Inspector& f, std::variant<Ts...>& x, uint8_t index) {
  if constexpr (I < sizeof...(Ts)) {
    if (index == I) {
      std::variant_alternative_t<I, std::variant<Ts...>> tmp{};
      if (auto err = f(tmp)) return err;
      x.template emplace<I>(std::move(tmp));
      return none;
    }
    return load_alternative<I + 1>(f, x, index);
  } else {
    return make_error(sec::invalid_argument, "bad std::variant index");
  }
}

}  // namespace mnemo_detail

/// Inspects a std::variant: index, then the held alternative.
template <class Inspector, class... Ts>
typename Inspector::result_type inspect(Inspector& f, std::variant<Ts...>& x) {
  static_assert(sizeof...(Ts) < 256, "too many alternatives");
  if constexpr (Inspector::reads_state) {
    auto index = static_cast<uint8_t>(x.index());
    return std::visit([&](auto& v) { return f(meta::omittable(), index, v); },
                      x);
  } else {
    uint8_t index = 0;
    if (auto err = f(index)) return err;
    return mnemo_detail::load_alternative<0>(f, x, index);
  }
}

namespace detail {
// stringification_inspector lives here; let it find the overload above.
using caf::inspect;
}  // namespace detail

}  // namespace caf
