#include "mnemo/persistence/stream_export.hpp"

#include <cstring>

#include <libdeflate.h>
#include <msgpack.hpp>

#include "lmdb_util.hpp"

namespace mnemo::persistence {

namespace {

// "MNEMO-STREAMS\n", u32 big-endian format version, u32 big-endian CRC-32
// of the body, msgpack body.
constexpr std::string_view magic = "MNEMO-STREAMS\n";
constexpr uint32_t bundle_version = 1;
constexpr size_t header_size = magic.size() + 8;

using packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(packer& pk, std::string_view x) {
  pk.pack_str(static_cast<uint32_t>(x.size()));
  pk.pack_str_body(x.data(), static_cast<uint32_t>(x.size()));
}

void pack_bin(packer& pk, const void* data, size_t size) {
  pk.pack_bin(static_cast<uint32_t>(size));
  pk.pack_bin_body(static_cast<const char*>(data), static_cast<uint32_t>(size));
}

void pack_map(packer& pk, const event_metadata& m) {
  pk.pack_map(static_cast<uint32_t>(m.size()));
  for (auto& [k, v] : m) {
    pack_str(pk, k);
    pack_str(pk, v);
  }
}

void pack_event(packer& pk, const event_envelope& e) {
  pk.pack_array(11);
  pack_bin(pk, e.id.bytes.data(), e.id.bytes.size());
  pk.pack(e.sequence);
  pk.pack(e.position);
  pack_str(pk, e.type);
  pk.pack(e.schema_version);
  pk.pack(e.timestamp_us);
  pack_str(pk, e.correlation_id);
  pack_str(pk, e.causation_id);
  pk.pack_array(static_cast<uint32_t>(e.tags.size()));
  for (auto& t : e.tags) pack_str(pk, t);
  pack_map(pk, e.metadata);
  pack_bin(pk, e.payload.data(), e.payload.size());
}

void pack_snapshot(packer& pk, const snapshot& s) {
  pk.pack_array(6);
  pk.pack(s.meta.sequence);
  pk.pack(s.meta.timestamp_us);
  pack_str(pk, s.type);
  pk.pack(s.schema_version);
  pack_bin(pk, s.payload.data(), s.payload.size());
  pack_map(pk, s.metadata);
}

// -- decoding: throws std::runtime_error (or msgpack's errors) on bad shape.

const msgpack::object* array_of(const msgpack::object& o, uint32_t size,
                                const char* what) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != size)
    throw std::runtime_error{std::string{what} + " has the wrong shape"};
  return o.via.array.ptr;
}

std::string str_of(const msgpack::object& o) {
  if (o.type != msgpack::type::STR) throw std::runtime_error{"not a string"};
  return std::string{o.via.str.ptr, o.via.str.size};
}

std::vector<uint8_t> bin_of(const msgpack::object& o) {
  if (o.type != msgpack::type::BIN) throw std::runtime_error{"not bytes"};
  auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
  return {p, p + o.via.bin.size};
}

event_metadata map_of(const msgpack::object& o) {
  if (o.type != msgpack::type::MAP) throw std::runtime_error{"not a map"};
  event_metadata result;
  for (uint32_t i = 0; i < o.via.map.size; ++i)
    result.emplace(str_of(o.via.map.ptr[i].key), str_of(o.via.map.ptr[i].val));
  return result;
}

event_envelope event_of(const msgpack::object& o, const std::string& stream) {
  auto* f = array_of(o, 11, "an event");
  event_envelope e;
  auto id = bin_of(f[0]);
  if (id.size() != 16) throw std::runtime_error{"an event id is not 16 bytes"};
  std::memcpy(e.id.bytes.data(), id.data(), 16);
  e.stream_id = stream;
  e.sequence = f[1].as<uint64_t>();
  e.position = f[2].as<uint64_t>();
  e.type = str_of(f[3]);
  e.schema_version = f[4].as<uint32_t>();
  e.timestamp_us = f[5].as<int64_t>();
  e.correlation_id = str_of(f[6]);
  e.causation_id = str_of(f[7]);
  if (f[8].type != msgpack::type::ARRAY)
    throw std::runtime_error{"tags are not an array"};
  for (uint32_t i = 0; i < f[8].via.array.size; ++i)
    e.tags.push_back(str_of(f[8].via.array.ptr[i]));
  e.metadata = map_of(f[9]);
  e.payload = bin_of(f[10]);
  return e;
}

snapshot snapshot_of(const msgpack::object& o, const std::string& stream) {
  auto* f = array_of(o, 6, "a snapshot");
  snapshot s;
  s.meta.stream_id = stream;
  s.meta.sequence = f[0].as<uint64_t>();
  s.meta.timestamp_us = f[1].as<int64_t>();
  s.type = str_of(f[2]);
  s.schema_version = f[3].as<uint32_t>();
  s.payload = bin_of(f[4]);
  s.metadata = map_of(f[5]);
  return s;
}

}  // namespace

std::string encode_bundle(const stream_bundle& bundle) {
  msgpack::sbuffer buf;
  packer pk{buf};
  pk.pack_array(2);
  pack_map(pk, bundle.labels);
  pk.pack_array(static_cast<uint32_t>(bundle.streams.size()));
  for (auto& s : bundle.streams) {
    pk.pack_array(5);
    pack_str(pk, s.head.stream_id);
    pk.pack(s.head.highest_sequence);
    pk.pack(s.head.deleted_to);
    pk.pack_array(static_cast<uint32_t>(s.events.size()));
    for (auto& e : s.events) pack_event(pk, e);
    pk.pack_array(static_cast<uint32_t>(s.snapshots.size()));
    for (auto& snap : s.snapshots) pack_snapshot(pk, snap);
  }
  std::string out;
  out.reserve(header_size + buf.size());
  out.append(magic);
  char word[8];
  put_be64(word, (uint64_t{bundle_version} << 32) |
                     libdeflate_crc32(0, buf.data(), buf.size()));
  out.append(word, 8);
  out.append(buf.data(), buf.size());
  return out;
}

expected<stream_bundle> decode_bundle(std::string_view bytes) {
  if (bytes.size() < header_size || bytes.substr(0, magic.size()) != magic)
    return error{errc::format_mismatch, "not a mnemo stream bundle"};
  auto word = get_be64(bytes.data() + magic.size());
  auto version = static_cast<uint32_t>(word >> 32);
  if (version != bundle_version)
    return error{errc::format_mismatch,
                 "stream bundle format " + std::to_string(version) +
                     "; this build reads " + std::to_string(bundle_version)};
  auto body = bytes.substr(header_size);
  if (libdeflate_crc32(0, body.data(), body.size()) !=
      static_cast<uint32_t>(word))
    return error{errc::corrupt_record,
                 "stream bundle checksum mismatch: the file is damaged or "
                 "incomplete; export it again"};
  try {
    auto handle = msgpack::unpack(body.data(), body.size());
    auto* top = array_of(handle.get(), 2, "the bundle");
    stream_bundle result;
    result.labels = map_of(top[0]);
    if (top[1].type != msgpack::type::ARRAY)
      throw std::runtime_error{"streams are not an array"};
    for (uint32_t i = 0; i < top[1].via.array.size; ++i) {
      auto* f = array_of(top[1].via.array.ptr[i], 5, "a stream");
      stream_export s;
      s.head.stream_id = str_of(f[0]);
      s.head.highest_sequence = f[1].as<uint64_t>();
      s.head.deleted_to = f[2].as<uint64_t>();
      if (f[3].type != msgpack::type::ARRAY ||
          f[4].type != msgpack::type::ARRAY)
        throw std::runtime_error{"events or snapshots are not arrays"};
      for (uint32_t j = 0; j < f[3].via.array.size; ++j)
        s.events.push_back(event_of(f[3].via.array.ptr[j], s.head.stream_id));
      for (uint32_t j = 0; j < f[4].via.array.size; ++j)
        s.snapshots.push_back(
            snapshot_of(f[4].via.array.ptr[j], s.head.stream_id));
      result.streams.push_back(std::move(s));
    }
    return result;
  } catch (const std::exception& e) {
    return error{errc::corrupt_record,
                 std::string{"stream bundle does not decode: "} + e.what()};
  }
}

std::string encode_event(const event_envelope& event) {
  msgpack::sbuffer buf;
  packer pk{buf};
  pk.pack_array(2);
  pack_str(pk, event.stream_id);
  pack_event(pk, event);
  return std::string{buf.data(), buf.size()};
}

expected<event_envelope> decode_event(std::string_view bytes) {
  try {
    std::size_t used = 0;
    auto handle = msgpack::unpack(bytes.data(), bytes.size(), used);
    if (used != bytes.size())
      throw std::runtime_error{"trailing bytes after the event"};
    auto* top = array_of(handle.get(), 2, "an encoded event");
    return event_of(top[1], str_of(top[0]));
  } catch (const std::exception& e) {
    return error{errc::corrupt_record,
                 std::string{"encoded event does not decode: "} + e.what()};
  }
}

}  // namespace mnemo::persistence
