#pragma once

// Values as bytes for the cluster's envelopes: CAF's binary format of any
// inspectable type, preceded by a one-byte kind. Decoding checks that the
// whole buffer is consumed, so a truncated or padded payload is an error.

#include <cstdint>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/error.hpp>

#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime::wire {

using bytes = std::vector<char>;

/// Returns `xs` in CAF's binary format after the byte `kind`.
template <class... Ts>
bytes pack(uint8_t kind, Ts&... xs) {
  bytes buf;
  caf::binary_serializer sink{nullptr, buf};
  if (auto err = sink(kind, xs...)) return {};
  return buf;
}

/// Returns the kind byte of `buf`, or 255 for an empty buffer.
inline uint8_t kind_of(const bytes& buf) {
  return buf.empty() ? 255 : static_cast<uint8_t>(buf.front());
}

/// Reads `xs` from `buf` after its kind byte. Errors: `invalid_argument`
/// for a malformed or partly consumed buffer.
template <class... Ts>
caf::error unpack(const bytes& buf, Ts&... xs) {
  if (buf.empty())
    return make_error(errc::invalid_argument, "empty cluster payload");
  caf::binary_deserializer source{nullptr, buf.data() + 1, buf.size() - 1};
  if (auto err = source(xs...))
    return make_error(errc::invalid_argument,
                      "malformed cluster payload: " + to_string(err));
  if (source.remaining() != 0)
    return make_error(errc::invalid_argument,
                      "cluster payload has " +
                          std::to_string(source.remaining()) +
                          " trailing bytes");
  return {};
}

}  // namespace mnemo::runtime::wire
