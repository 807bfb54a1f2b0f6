#pragma once

// One declaration per message type: MNEMO_MESSAGE, inside the struct,
// lists its fields once and gives the type
// - its disk encoding: a msgpack map of the fields by name
//   (MSGPACK_DEFINE_MAP; events, states, snapshots in the journal);
// - its wire encoding: CAF's `inspect` writes the same msgpack bytes, so a
//   command, reply or state crosses CAF messages and the cluster wire
//   (mnemo/runtime/wire.hpp) in one format, and a field added later is
//   read by older members as msgpack maps are (missing keys keep their
//   defaults, unknown keys are skipped);
// - its name (`mnemo_type_name`, also what CAF prints it as);
// - `==` and `!=`, field by field.
//
//   struct deposit {
//     int64_t amount = 0;
//     MNEMO_MESSAGE(deposit, amount)
//   };
//   struct close_account {
//     MNEMO_EMPTY_MESSAGE(close_account)
//   };
//
// The struct stays an aggregate (`deposit{5}`). Every field must be
// msgpack-encodable and comparable with ==.

#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/serializer.hpp>
#include <msgpack.hpp>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime {

/// CAF's `inspect` of a type declared with MNEMO_MESSAGE: its msgpack
/// bytes as one string for CAF's serializers and deserializers, the
/// msgpack value as text for CAF's to_string.
template <class Inspector, class T>
typename Inspector::result_type inspect_msgpack(Inspector& f, T& x) {
  auto name = caf::meta::type_name(T::mnemo_type_name);
  if constexpr (Inspector::writes_state) {
    std::string buf;
    auto load = [&]() -> caf::error {
      try {
        auto handle = msgpack::unpack(buf.data(), buf.size());
        T value{};
        handle.get().convert(value);
        x = std::move(value);
      } catch (const std::exception& e) {
        return make_error(
            errc::invalid_argument,
            std::string{"malformed "} + T::mnemo_type_name + ": " + e.what());
      }
      return {};
    };
    return f(name, buf, caf::meta::load_callback(load));
  } else {
    msgpack::sbuffer packed;
    msgpack::pack(packed, x);
    if constexpr (std::is_base_of<caf::serializer, Inspector>::value) {
      std::string buf{packed.data(), packed.size()};
      return f(name, buf);
    } else {
      // Printing (deep_to_string): the fields as msgpack shows them.
      auto handle = msgpack::unpack(packed.data(), packed.size());
      std::ostringstream text;
      text << handle.get();
      auto shown = text.str();
      return f(name, shown);
    }
  }
}

}  // namespace mnemo::runtime

/// Declares, inside struct `Type`, its fields (`...`, at least one; see
/// MNEMO_EMPTY_MESSAGE for none) for msgpack, CAF and ==.
#define MNEMO_MESSAGE(Type, ...)  \
  MSGPACK_DEFINE_MAP(__VA_ARGS__) \
  MNEMO_MESSAGE_COMMON(Type, __VA_ARGS__)

/// MNEMO_MESSAGE for a struct without fields (an empty msgpack map).
#define MNEMO_EMPTY_MESSAGE(Type)                                  \
  template <class Packer>                                          \
  void msgpack_pack(Packer& pk) const {                            \
    pk.pack_map(0);                                                \
  }                                                                \
  void msgpack_unpack(const msgpack::object& o) {                  \
    if (o.type != msgpack::type::MAP) throw msgpack::type_error(); \
  }                                                                \
  template <class Object>                                          \
  void msgpack_object(Object* o, msgpack::zone&) const {           \
    o->type = msgpack::type::MAP;                                  \
    o->via.map.size = 0;                                           \
    o->via.map.ptr = nullptr;                                      \
  }                                                                \
  MNEMO_MESSAGE_COMMON(Type, )

#define MNEMO_MESSAGE_COMMON(Type, ...)                                   \
  static constexpr const char* mnemo_type_name = #Type;                   \
  auto mnemo_fields() const {                                             \
    return std::tie(__VA_ARGS__);                                         \
  }                                                                       \
  friend bool operator==(const Type& x, const Type& y) {                  \
    return x.mnemo_fields() == y.mnemo_fields();                          \
  }                                                                       \
  friend bool operator!=(const Type& x, const Type& y) {                  \
    return !(x == y);                                                     \
  }                                                                       \
  template <class Inspector>                                              \
  friend typename Inspector::result_type inspect(Inspector& f, Type& x) { \
    return ::mnemo::runtime::inspect_msgpack(f, x);                       \
  }
