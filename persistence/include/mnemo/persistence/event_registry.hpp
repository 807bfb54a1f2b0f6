#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>
#include <vector>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"

namespace mnemo::persistence {

/// Turns a payload of schema version N into version N+1, in place. The
/// payload is given as JSON (decoded from its msgpack map) so that fields can
/// be renamed, added or reshaped freely. May throw nlohmann::json exceptions;
/// the registry reports them as `decode_failed`.
using upcaster = std::function<void(nlohmann::json& payload)>;

namespace detail {

/// Encodes `x` with msgpack; returns an error text on failure.
template <class T>
std::string pack_payload(const T& x, std::vector<uint8_t>& out) {
  try {
    msgpack::sbuffer buf{128};  // the default 8 KiB costs more than a regrow
    msgpack::pack(buf, x);
    auto* first = reinterpret_cast<const uint8_t*>(buf.data());
    out.assign(first, first + buf.size());
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

/// Decodes `x` from msgpack bytes; returns an error text on failure. This is
/// the one place where msgpack decode exceptions are translated.
template <class T>
std::string unpack_payload(const uint8_t* data, size_t size, T& x) {
  try {
    auto handle = msgpack::unpack(reinterpret_cast<const char*>(data), size);
    handle.get().convert(x);
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

/// Returns whether `bytes` start with a msgpack map marker.
bool is_msgpack_map(const std::vector<uint8_t>& bytes) noexcept;

}  // namespace detail

/// Registry of event (and snapshot state) types: name, current schema
/// version, C++ type, and the upcasters from older versions.
///
/// A registered C++ type must encode to a msgpack map keyed by field name
/// (`MSGPACK_DEFINE_MAP`), so that fields can be added without breaking old
/// data and any payload can be printed as JSON.
///
/// Thread safety: register everything before sharing the registry; the
/// const members may then run concurrently.
class event_registry {
 public:
  /// Registers `T` under `name` with current schema version `version`.
  /// Errors: `invalid_argument` if the name or the C++ type is registered
  /// already, the name is empty, or `version` is 0.
  template <class T>
  error add(std::string name, uint32_t version = 1) {
    return add_type(std::move(name), version, std::type_index(typeid(T)));
  }

  /// Registers the upcaster from `from_version` to `from_version + 1` of
  /// type `name`. Errors: `invalid_argument` if the type is unknown, the
  /// step is already registered, or `from_version` is not below the
  /// current version.
  error add_upcaster(std::string_view name, uint32_t from_version, upcaster fn);

  /// Returns the registered name of `T`, or nullptr.
  template <class T>
  const std::string* name_of() const noexcept {
    return name_of(std::type_index(typeid(T)));
  }

  /// Returns the current schema version of `name`, 0 if unregistered.
  uint32_t version_of(std::string_view name) const noexcept;

  /// Returns every registered type name, sorted.
  std::vector<std::string> names() const;

  /// Encodes `x` as a `new_event` with its registered type name, current
  /// version and payload. Errors: `unknown_event_type` (T unregistered),
  /// `encode_failed` (msgpack error, or T does not encode to a map).
  template <class T>
  expected<new_event> to_event(const T& x) const {
    new_event ev;
    if (auto err = encode(x, ev.type, ev.schema_version, ev.payload))
      return err;
    return ev;
  }

  /// Encodes `x` into `type`, `version` and `payload` (for events and
  /// snapshots alike). Errors: as for `to_event`.
  template <class T>
  error encode(const T& x, std::string& type, uint32_t& version,
               std::vector<uint8_t>& payload) const {
    auto name = name_of<T>();
    if (name == nullptr) return unregistered(typeid(T).name());
    type = *name;
    version = version_of(*name);
    auto what = detail::pack_payload(x, payload);
    return check_encoded(*name, what, payload);
  }

  /// Decodes the payload of `env` into a `T`, upcasting old versions first.
  /// Errors: `unknown_event_type` (type not registered),
  /// `unknown_schema_version` (no upcaster path, or newer than current),
  /// `decode_failed` (payload does not fit `T`, upcaster threw, or `T` is
  /// not the type registered under that name); each names type, version,
  /// stream and sequence.
  template <class T>
  expected<T> decode(const event_envelope& env) const {
    return decode_payload<T>(env.type, env.schema_version, env.payload,
                             env.stream_id, env.sequence);
  }

  /// Decodes a payload given by its parts; `stream` and `sequence` only
  /// name the record in errors. Errors: as for `decode`.
  template <class T>
  expected<T> decode_payload(std::string_view type, uint32_t version,
                             const std::vector<uint8_t>& payload,
                             std::string_view stream, uint64_t sequence) const {
    std::vector<uint8_t> upcasted;
    const std::vector<uint8_t>* bytes = &payload;
    if (auto err = prepare(type, version, std::type_index(typeid(T)), payload,
                           stream, sequence, upcasted, bytes))
      return err;
    T result{};
    auto what = detail::unpack_payload(bytes->data(), bytes->size(), result);
    if (!what.empty())
      return decode_error(type, version, stream, sequence, what);
    return result;
  }

  /// Returns the payload of `env` upcast to the current version of its
  /// type, as msgpack bytes. A payload of the current version is returned
  /// unchanged. Errors: `unknown_event_type`, `unknown_schema_version`,
  /// `decode_failed`.
  expected<std::vector<uint8_t>> upcast(const event_envelope& env) const;

  /// Returns the payload of `env` as JSON, upcast to the current version if
  /// its type is registered, as stored otherwise (tools print any event).
  /// Errors: `decode_failed` (payload is not valid msgpack).
  expected<nlohmann::json> payload_json(const event_envelope& env) const;

 private:
  struct entry {
    uint32_t version = 1;
    std::type_index type;
    std::map<uint32_t, upcaster> upcasters;
  };

  error add_type(std::string name, uint32_t version, std::type_index type);
  const std::string* name_of(std::type_index type) const noexcept;
  static error unregistered(const char* cxx_name);
  static error check_encoded(const std::string& name, const std::string& what,
                             const std::vector<uint8_t>& payload);
  static error decode_error(std::string_view type, uint32_t version,
                            std::string_view stream, uint64_t sequence,
                            const std::string& what);
  error prepare(std::string_view type, uint32_t version,
                std::type_index expected_type,
                const std::vector<uint8_t>& payload, std::string_view stream,
                uint64_t sequence, std::vector<uint8_t>& upcasted,
                const std::vector<uint8_t>*& bytes) const;
  error run_upcasters(const entry& e, std::string_view type, uint32_t version,
                      const std::vector<uint8_t>& payload,
                      std::string_view stream, uint64_t sequence,
                      std::vector<uint8_t>& out) const;

  std::map<std::string, entry, std::less<>> entries_;
  std::map<std::type_index, std::string> names_;
};

}  // namespace mnemo::persistence
