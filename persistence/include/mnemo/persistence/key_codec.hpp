#pragma once

// Order-preserving encoding of read-model keys (`read_model.hpp`).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mnemo::persistence {

/// Order-preserving key encoding: for keys `a` and `b` of one type,
/// `a < b` exactly when the encoding of `a` is bytewise smaller, so range
/// and prefix scans over the encoded keys mean what they mean on the values.
///
/// * `std::string` at the top level: its bytes as is (a prefix scan with
///   "ab" finds "ab", "abc", ...).
/// * unsigned integers: big-endian, `sizeof(T)` bytes.
/// * signed integers: two's complement big-endian, `sizeof(T)` bytes, with
///   the sign bit flipped (so -1 < 0 < 1 bytewise).
/// * `std::pair` and `std::tuple` of these (nesting allowed): the elements'
///   encodings concatenated, where every string is *escaped and
///   terminated*: each 0x00 byte is written as 0x00 0xFF and the string
///   ends with 0x00 0x01. This keeps the order ("a" < "a\0" < "ab") and
///   makes each element prefix-free, so ("a", 2) < ("a", 10) < ("ab", 1)
///   and a prefix scan on the first element "a" finds ("a", x) but not
///   ("ab", x).
///
/// Other key types: specialize `key_codec<T>` with
/// `static void encode(const T&, std::string& out, bool nested)` (append
/// the encoding; `nested` is true inside a pair or tuple, where the
/// encoding must be prefix-free) and `static bool decode(std::string_view&
/// in, T& out, bool nested)` (consume the encoding from the front of `in`;
/// false if it is malformed).
template <class T, class = void>
struct key_codec;

template <>
struct key_codec<std::string> {
  static void encode(const std::string& x, std::string& out, bool nested) {
    if (!nested) {
      out += x;
      return;
    }
    for (char c : x) {
      out.push_back(c);
      if (c == '\0') out.push_back('\xff');
    }
    out.push_back('\0');
    out.push_back('\x01');
  }
  static bool decode(std::string_view& in, std::string& x, bool nested) {
    if (!nested) {
      x.assign(in.data(), in.size());
      in = {};
      return true;
    }
    x.clear();
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] != '\0') {
        x.push_back(in[i]);
      } else if (i + 1 < in.size() && in[i + 1] == '\xff') {
        x.push_back('\0');
        ++i;
      } else if (i + 1 < in.size() && in[i + 1] == '\x01') {
        in.remove_prefix(i + 2);
        return true;
      } else {
        return false;
      }
    }
    return false;
  }
};

template <class T>
struct key_codec<
    T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  using bits = std::make_unsigned_t<T>;
  static constexpr bits sign_flip =
      std::is_signed_v<T> ? bits(bits{1} << (sizeof(T) * 8 - 1)) : bits{0};
  static void encode(T x, std::string& out, bool) {
    auto u = static_cast<bits>(static_cast<bits>(x) ^ sign_flip);
    for (size_t i = sizeof(T); i-- > 0;)
      out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
  static bool decode(std::string_view& in, T& x, bool) {
    if (in.size() < sizeof(T)) return false;
    bits u = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      u = static_cast<bits>((u << 8) | static_cast<uint8_t>(in[i]));
    x = static_cast<T>(static_cast<bits>(u ^ sign_flip));
    in.remove_prefix(sizeof(T));
    return true;
  }
};

template <class... Ts>
struct key_codec<std::tuple<Ts...>> {
  static void encode(const std::tuple<Ts...>& x, std::string& out, bool) {
    std::apply(
        [&out](const Ts&... xs) {
          (key_codec<Ts>::encode(xs, out, true), ...);
        },
        x);
  }
  static bool decode(std::string_view& in, std::tuple<Ts...>& x, bool) {
    return std::apply(
        [&in](Ts&... xs) {
          return (key_codec<Ts>::decode(in, xs, true) && ...);
        },
        x);
  }
};

template <class A, class B>
struct key_codec<std::pair<A, B>> {
  static void encode(const std::pair<A, B>& x, std::string& out, bool) {
    key_codec<A>::encode(x.first, out, true);
    key_codec<B>::encode(x.second, out, true);
  }
  static bool decode(std::string_view& in, std::pair<A, B>& x, bool) {
    return key_codec<A>::decode(in, x.first, true) &&
           key_codec<B>::decode(in, x.second, true);
  }
};

/// Returns the top-level encoding of `x` (as stored).
template <class T>
std::string encode_key(const T& x) {
  std::string out;
  key_codec<T>::encode(x, out, false);
  return out;
}

/// Decodes a whole top-level key; false if malformed or not fully used.
template <class T>
bool decode_key(std::string_view in, T& x) {
  return key_codec<T>::decode(in, x, false) && in.empty();
}

namespace detail {

template <class K>
struct key_parts {
  static constexpr bool composite = false;
  using elements = std::tuple<K>;
};
template <class A, class B>
struct key_parts<std::pair<A, B>> {
  static constexpr bool composite = true;
  using elements = std::tuple<A, B>;
};
template <class... Ts>
struct key_parts<std::tuple<Ts...>> {
  static constexpr bool composite = true;
  using elements = std::tuple<Ts...>;
};

// Whether the types of tuple P are the leading element types of tuple E.
template <
    class P, class E,
    class = std::make_index_sequence<
        std::tuple_size_v<P> <= std::tuple_size_v<E> ? std::tuple_size_v<P>
                                                     : 0>>
struct is_leading;
template <class P, class E, size_t... I>
struct is_leading<P, E, std::index_sequence<I...>>
    : std::bool_constant<std::tuple_size_v<P> <= std::tuple_size_v<E> &&
                         (std::is_same_v<std::tuple_element_t<I, P>,
                                         std::tuple_element_t<I, E>> &&
                          ...)> {};

}  // namespace detail

}  // namespace mnemo::persistence
