#pragma once

// Error enums of an application, one line per code: MNEMO_ERROR_ENUM
// declares the enum and everything a CAF error category needs around it.
//
//   namespace bank {
//   MNEMO_ERROR_ENUM(account_errc, "bank",
//                    none,
//                    already_exists,
//                    insufficient_funds)
//   }
//   ...
//   return effect::reject(make_error(account_errc::insufficient_funds,
//                                    "balance 5 is below 10"));
//   ...
//   mnemo::runtime::add_error_category<bank::account_errc>(cfg);
//
// Codes count from 0 in the order written (the first one should be
// `none`): they are stored and sent over the network, so append new ones
// and never reorder or remove one. No `= value`: a code's name is its
// text in the list (comments between the codes are fine).

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

/// What MNEMO_ERROR_ENUM records of an enum: its category and the names of
/// its codes, by code.
struct error_enum_info {
  caf::atom_value category;
  std::vector<std::string> names;
};

namespace detail {

/// The names in `list`, the enumerators as written ("a, b ,c").
inline std::vector<std::string> enumerator_names(std::string_view list) {
  std::vector<std::string> out;
  auto trim = [](std::string_view s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return std::string_view{};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
  };
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    item = trim(item.substr(0, item.find('=')));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace detail

/// The name of code `x` of an enum declared with MNEMO_ERROR_ENUM, e.g.
/// "insufficient_funds"; "unknown" for a value outside the enum.
template <class Enum>
const char* error_name(Enum x) noexcept {
  auto& info = mnemo_error_enum(Enum{});
  auto i = static_cast<size_t>(x);
  return i < info.names.size() ? info.names[i].c_str() : "unknown";
}

/// Lets `actor_system::render` print errors of `Enum` (declared with
/// MNEMO_ERROR_ENUM) as "code: message" and `runtime::describe` as
/// "category:code: message". Call once per config, before the actor
/// system starts.
template <class Enum>
void add_error_category(caf::actor_system_config& cfg) {
  auto& info = mnemo_error_enum(Enum{});
  register_error_names(info.category, info.names);
  cfg.add_error_category(info.category, [](uint8_t code, caf::atom_value,
                                           const caf::message& ctx) {
    std::string text = error_name(static_cast<Enum>(code));
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      text += ": " + ctx.get_as<std::string>(0);
    return text;
  });
}

}  // namespace mnemo::runtime

/// Declares `enum class Enum : uint8_t { codes... }` of CAF error category
/// `Category` (a string of at most 10 characters) in the current
/// namespace, with, found by argument-dependent lookup:
/// - `caf::error make_error(Enum, std::string message)`: the error with
///   `message` (what failed, on which input, what to do) as its context;
/// - `bool is(const caf::error&, Enum)`;
/// - `const char* to_string(Enum)`: the code's name, "unknown" outside.
/// Register it with `mnemo::runtime::add_error_category<Enum>(cfg)`.
#define MNEMO_ERROR_ENUM(Enum, Category, ...)                              \
  enum class Enum : uint8_t { __VA_ARGS__ };                               \
  inline const ::mnemo::runtime::error_enum_info& mnemo_error_enum(Enum) { \
    static const ::mnemo::runtime::error_enum_info info{                   \
        ::caf::atom(Category),                                             \
        ::mnemo::runtime::detail::enumerator_names(#__VA_ARGS__)};         \
    return info;                                                           \
  }                                                                        \
  inline ::caf::error make_error(Enum x, std::string message) {            \
    return ::caf::error{static_cast<uint8_t>(x), ::caf::atom(Category),    \
                        ::caf::make_message(std::move(message))};          \
  }                                                                        \
  inline bool is(const ::caf::error& err, Enum x) noexcept {               \
    return err.category() == ::caf::atom(Category) &&                      \
           err.code() == static_cast<uint8_t>(x);                          \
  }                                                                        \
  inline const char* to_string(Enum x) noexcept {                          \
    return ::mnemo::runtime::error_name(x);                                \
  }
