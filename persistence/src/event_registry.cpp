#include "mnemo/persistence/event_registry.hpp"

namespace mnemo::persistence {

namespace detail {

bool is_msgpack_map(const std::vector<uint8_t>& bytes) noexcept {
  if (bytes.empty()) return false;
  auto marker = bytes[0];
  return (marker >= 0x80 && marker <= 0x8f) || marker == 0xde || marker == 0xdf;
}

}  // namespace detail

namespace {

std::string record_text(std::string_view type, uint32_t version,
                        std::string_view stream, uint64_t sequence) {
  return "event type '" + std::string{type} + "' version " +
         std::to_string(version) + " (stream '" + std::string{stream} +
         "', sequence " + std::to_string(sequence) + ")";
}

}  // namespace

error event_registry::add_type(std::string name, uint32_t version,
                               std::type_index type) {
  if (name.empty())
    return error{errc::invalid_argument, "event type name is empty"};
  if (version == 0)
    return error{errc::invalid_argument,
                 "event type '" + name + "': schema versions start at 1"};
  if (entries_.count(name) != 0)
    return error{errc::invalid_argument,
                 "event type '" + name + "' is registered already"};
  if (names_.count(type) != 0)
    return error{errc::invalid_argument, "C++ type of '" + name +
                                             "' is registered already as '" +
                                             names_.at(type) + "'"};
  names_.emplace(type, name);
  entries_.emplace(std::move(name), entry{version, type, {}});
  return {};
}

error event_registry::add_upcaster(std::string_view name, uint32_t from_version,
                                   upcaster fn) {
  auto i = entries_.find(name);
  if (i == entries_.end())
    return error{errc::invalid_argument,
                 "cannot add an upcaster to unregistered event type '" +
                     std::string{name} + "'"};
  auto& e = i->second;
  if (from_version == 0 || from_version >= e.version)
    return error{errc::invalid_argument,
                 "upcaster of '" + std::string{name} + "' from version " +
                     std::to_string(from_version) +
                     " must start below the current version " +
                     std::to_string(e.version)};
  if (!e.upcasters.emplace(from_version, std::move(fn)).second)
    return error{errc::invalid_argument,
                 "upcaster of '" + std::string{name} + "' from version " +
                     std::to_string(from_version) + " exists already"};
  return {};
}

const std::string* event_registry::name_of(
    std::type_index type) const noexcept {
  auto i = names_.find(type);
  return i == names_.end() ? nullptr : &i->second;
}

uint32_t event_registry::version_of(std::string_view name) const noexcept {
  auto i = entries_.find(name);
  return i == entries_.end() ? 0 : i->second.version;
}

std::vector<std::string> event_registry::names() const {
  std::vector<std::string> result;
  for (auto& kvp : entries_) result.push_back(kvp.first);
  return result;
}

error event_registry::unregistered(const char* cxx_name) {
  return error{errc::unknown_event_type,
               std::string{"C++ type "} + cxx_name +
                   " is not registered; call event_registry::add<T>(name)"};
}

error event_registry::check_encoded(const std::string& name,
                                    const std::string& what,
                                    const std::vector<uint8_t>& payload) {
  if (!what.empty())
    return error{errc::encode_failed,
                 "encoding event type '" + name + "' failed: " + what};
  if (!detail::is_msgpack_map(payload))
    return error{errc::encode_failed,
                 "event type '" + name +
                     "' does not encode to a msgpack map; declare its fields "
                     "with MSGPACK_DEFINE_MAP"};
  return {};
}

error event_registry::decode_error(std::string_view type, uint32_t version,
                                   std::string_view stream, uint64_t sequence,
                                   const std::string& what) {
  return error{errc::decode_failed,
               "cannot decode " + record_text(type, version, stream, sequence) +
                   ": " + what};
}

error event_registry::prepare(std::string_view type, uint32_t version,
                              std::type_index expected_type,
                              const std::vector<uint8_t>& payload,
                              std::string_view stream, uint64_t sequence,
                              std::vector<uint8_t>& upcasted,
                              const std::vector<uint8_t>*& bytes) const {
  auto i = entries_.find(type);
  if (i == entries_.end())
    return error{errc::unknown_event_type,
                 record_text(type, version, stream, sequence) +
                     " is not registered; register it with "
                     "event_registry::add<T>(name, version)"};
  auto& e = i->second;
  if (e.type != expected_type)
    return decode_error(type, version, stream, sequence,
                        "it is registered for another C++ type");
  if (version == e.version) {
    bytes = &payload;
    return {};
  }
  if (auto err =
          run_upcasters(e, type, version, payload, stream, sequence, upcasted))
    return err;
  bytes = &upcasted;
  return {};
}

error event_registry::run_upcasters(const entry& e, std::string_view type,
                                    uint32_t version,
                                    const std::vector<uint8_t>& payload,
                                    std::string_view stream, uint64_t sequence,
                                    std::vector<uint8_t>& out) const {
  if (version > e.version)
    return error{errc::unknown_schema_version,
                 record_text(type, version, stream, sequence) +
                     " is newer than the current version " +
                     std::to_string(e.version) +
                     " of this build; upgrade the reader"};
  for (auto v = version; v < e.version; ++v)
    if (e.upcasters.count(v) == 0)
      return error{errc::unknown_schema_version,
                   record_text(type, version, stream, sequence) +
                       " cannot be read: no upcaster from version " +
                       std::to_string(v) + " to " + std::to_string(v + 1) +
                       "; register one with add_upcaster"};
  try {
    auto doc = nlohmann::json::from_msgpack(payload);
    for (auto v = version; v < e.version; ++v) e.upcasters.at(v)(doc);
    out = nlohmann::json::to_msgpack(doc);
  } catch (const std::exception& ex) {
    return decode_error(type, version, stream, sequence,
                        std::string{"upcasting failed: "} + ex.what());
  }
  return {};
}

expected<std::vector<uint8_t>> event_registry::upcast(
    const event_envelope& env) const {
  auto i = entries_.find(env.type);
  if (i == entries_.end())
    return error{
        errc::unknown_event_type,
        record_text(env.type, env.schema_version, env.stream_id, env.sequence) +
            " is not registered"};
  if (env.schema_version == i->second.version) return env.payload;
  std::vector<uint8_t> out;
  if (auto err = run_upcasters(i->second, env.type, env.schema_version,
                               env.payload, env.stream_id, env.sequence, out))
    return err;
  return out;
}

expected<nlohmann::json> event_registry::payload_json(
    const event_envelope& env) const {
  const std::vector<uint8_t>* bytes = &env.payload;
  std::vector<uint8_t> upcasted;
  auto i = entries_.find(env.type);
  if (i != entries_.end() && env.schema_version != i->second.version) {
    if (auto err =
            run_upcasters(i->second, env.type, env.schema_version, env.payload,
                          env.stream_id, env.sequence, upcasted))
      return err;
    bytes = &upcasted;
  }
  try {
    return nlohmann::json::from_msgpack(*bytes);
  } catch (const std::exception& ex) {
    return decode_error(env.type, env.schema_version, env.stream_id,
                        env.sequence,
                        std::string{"payload is not msgpack: "} + ex.what());
  }
}

}  // namespace mnemo::persistence
