#include "record_codec.hpp"

#include <libdeflate.h>

#include "lmdb_util.hpp"

namespace mnemo::persistence {
namespace {

constexpr uint32_t event_body_fields = 9;
constexpr uint32_t snapshot_body_fields = 5;

// msgpack's packer needs a `write(const char*, size_t)` member; std::string
// has none, so adapt it.

struct string_sink {
  std::string* out;
  void write(const char* data, size_t size) { out->append(data, size); }
};

void pack_str(msgpack::packer<string_sink>& pk, std::string_view x) {
  pk.pack_str(static_cast<uint32_t>(x.size()));
  pk.pack_str_body(x.data(), static_cast<uint32_t>(x.size()));
}

void pack_bin(msgpack::packer<string_sink>& pk, const uint8_t* data,
              size_t size) {
  pk.pack_bin(static_cast<uint32_t>(size));
  pk.pack_bin_body(reinterpret_cast<const char*>(data),
                   static_cast<uint32_t>(size));
}

void pack_metadata(msgpack::packer<string_sink>& pk,
                   const event_metadata& meta) {
  pk.pack_map(static_cast<uint32_t>(meta.size()));
  for (auto& [k, v] : meta) {
    pack_str(pk, k);
    pack_str(pk, v);
  }
}

uint32_t checksum(const char* data, size_t size) noexcept {
  return libdeflate_crc32(0, data, size);
}

std::string origin_text(const record_origin& o) {
  std::string text;
  if (!o.stream.empty()) {
    text = "stream '" + std::string{o.stream} + "' at sequence " +
           std::to_string(o.sequence);
    if (o.position != 0)
      text += " (global position " + std::to_string(o.position) + ")";
  } else {
    text = "global position " + std::to_string(o.position);
  }
  return text;
}

error corrupt(const record_origin& o, std::string_view what) {
  return error{errc::corrupt_record,
               "corrupt record in " + origin_text(o) + ": " +
                   std::string{what} +
                   "; the data directory is damaged: restore it from a "
                   "backup (nothing was skipped or reset)"};
}

// Verifies size, checksum and kind; returns the body on success.
error open_record(std::string_view record, uint8_t kind,
                  const record_origin& origin, uint64_t& sequence,
                  int64_t& timestamp, uint64_t& previous,
                  std::string_view& body) {
  if (record.size() < record_header_size)
    return corrupt(origin, "record of " + std::to_string(record.size()) +
                               " bytes is shorter than its header");
  uint32_t stored = 0;
  for (int i = 3; i >= 0; --i)
    stored = (stored << 8) | static_cast<uint8_t>(record[i]);
  if (stored != checksum(record.data() + 4, record.size() - 4))
    return corrupt(origin, "checksum mismatch");
  if (static_cast<uint8_t>(record[4]) != kind)
    return corrupt(
        origin, "unexpected record kind " + std::to_string(uint8_t(record[4])));
  sequence = get_be64(record.data() + 5);
  timestamp = static_cast<int64_t>(get_be64(record.data() + 13));
  previous = get_be64(record.data() + 21);
  if (origin.sequence != 0 && sequence != origin.sequence)
    return corrupt(origin, "record holds sequence " + std::to_string(sequence));
  body = record.substr(record_header_size);
  return {};
}

// `open_record` for an event record whose header fields are not needed.
error open_event_body(std::string_view record, const record_origin& origin,
                      std::string_view& body) {
  uint64_t seq = 0;
  int64_t ts = 0;
  uint64_t previous = 0;
  return open_record(record, event_record_kind, origin, seq, ts, previous,
                     body);
}

std::string_view as_str(const msgpack::object& o) {
  if (o.type != msgpack::type::STR) throw msgpack::type_error();
  return {o.via.str.ptr, o.via.str.size};
}

void as_bin(const msgpack::object& o, std::vector<uint8_t>& out) {
  if (o.type != msgpack::type::BIN) throw msgpack::type_error();
  auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
  out.assign(p, p + o.via.bin.size);
}

void as_tags(const msgpack::object& o, std::vector<std::string>& out) {
  if (o.type != msgpack::type::ARRAY) throw msgpack::type_error();
  out.clear();
  out.reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i)
    out.emplace_back(as_str(o.via.array.ptr[i]));
}

void as_metadata(const msgpack::object& o, event_metadata& out) {
  if (o.type != msgpack::type::MAP) throw msgpack::type_error();
  out.clear();
  for (uint32_t i = 0; i < o.via.map.size; ++i)
    out.emplace(as_str(o.via.map.ptr[i].key), as_str(o.via.map.ptr[i].val));
}

// Unpacks `body` into an array of exactly `fields` objects.
const msgpack::object* unpack_array(std::string_view body, msgpack::zone& zone,
                                    uint32_t fields) {
  size_t off = 0;
  auto obj = msgpack::unpack(zone, body.data(), body.size(), off);
  if (off != body.size() || obj.type != msgpack::type::ARRAY ||
      obj.via.array.size != fields)
    throw msgpack::type_error();
  return obj.via.array.ptr;
}

}  // namespace

size_t event_body_size_bound(std::string_view stream,
                             const new_event& ev) noexcept {
  // A msgpack header (array, map, str, bin) or unsigned int takes at most
  // 5 bytes.
  constexpr size_t header = 5;
  size_t n = header + (header + ev.id.bytes.size()) + (header + stream.size()) +
             (header + ev.type.size()) + header +
             (header + ev.correlation_id.size()) +
             (header + ev.causation_id.size()) + header + header +
             (header + ev.payload.size());
  for (auto& tag : ev.tags) n += header + tag.size();
  for (auto& [k, v] : ev.metadata) n += 2 * header + k.size() + v.size();
  return n;
}

void encode_event_body(std::string_view stream, const new_event& ev,
                       std::string& out) {
  string_sink sink{&out};
  msgpack::packer<string_sink> pk(sink);
  pk.pack_array(event_body_fields);
  pack_bin(pk, ev.id.bytes.data(), ev.id.bytes.size());
  pack_str(pk, stream);
  pack_str(pk, ev.type);
  pk.pack_uint32(ev.schema_version);
  pack_str(pk, ev.correlation_id);
  pack_str(pk, ev.causation_id);
  pk.pack_array(static_cast<uint32_t>(ev.tags.size()));
  for (auto& tag : ev.tags) pack_str(pk, tag);
  pack_metadata(pk, ev.metadata);
  pack_bin(pk, ev.payload.data(), ev.payload.size());
}

void seal_record(char* out, size_t size, uint8_t kind, uint64_t sequence,
                 int64_t timestamp_us, uint64_t previous) noexcept {
  out[4] = static_cast<char>(kind);
  put_be64(out + 5, sequence);
  put_be64(out + 13, static_cast<uint64_t>(timestamp_us));
  put_be64(out + 21, previous);
  auto sum = checksum(out + 4, size - 4);
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<char>(sum & 0xff);
    sum >>= 8;
  }
}

error decode_event(std::string_view record, const record_origin& origin,
                   msgpack::zone& zone, event_envelope& out) {
  std::string_view body;
  uint64_t previous = 0;
  if (auto err = open_record(record, event_record_kind, origin, out.sequence,
                             out.timestamp_us, previous, body))
    return err;
  try {
    zone.clear();
    auto* f = unpack_array(body, zone, event_body_fields);
    if (f[0].type != msgpack::type::BIN || f[0].via.bin.size != 16)
      throw msgpack::type_error();
    std::memcpy(out.id.bytes.data(), f[0].via.bin.ptr, 16);
    auto stream = as_str(f[1]);
    if (!origin.stream.empty() && stream != origin.stream)
      return corrupt(origin,
                     "record belongs to stream '" + std::string{stream} + "'");
    out.stream_id.assign(stream);
    out.type.assign(as_str(f[2]));
    out.schema_version = f[3].as<uint32_t>();
    out.correlation_id.assign(as_str(f[4]));
    out.causation_id.assign(as_str(f[5]));
    as_tags(f[6], out.tags);
    as_metadata(f[7], out.metadata);
    as_bin(f[8], out.payload);
  } catch (const std::exception& e) {
    return corrupt(origin,
                   std::string{"undecodable envelope ("} + e.what() + ")");
  }
  out.position = origin.position;
  return {};
}

error peek_event(std::string_view record, const record_origin& origin,
                 uint64_t& previous) {
  if (record.size() < record_header_size ||
      static_cast<uint8_t>(record[4]) != event_record_kind ||
      get_be64(record.data() + 5) != origin.sequence)
    return corrupt(origin, "record header does not match its link");
  previous = get_be64(record.data() + 21);
  return {};
}

error peek_event_stream(std::string_view record, const record_origin& origin,
                        std::string_view& stream) {
  std::string_view body;
  if (auto err = open_event_body(record, origin, body)) return err;
  // The body starts with the array header (fixarray of 9), the id (bin 8
  // of 16 bytes) and the stream id as a msgpack str (encode_event_body).
  auto* p = reinterpret_cast<const uint8_t*>(body.data());
  auto n = body.size();
  auto malformed = [&] { return corrupt(origin, "malformed event body"); };
  if (n < 20 || p[0] != (0x90 | event_body_fields) || p[1] != 0xc4 ||
      p[2] != 16)
    return malformed();
  size_t off = 19;
  size_t len = 0;
  auto h = p[off];
  if ((h & 0xe0) == 0xa0) {
    len = h & 0x1f;
    off += 1;
  } else if (h == 0xd9 && off + 1 < n) {
    len = p[off + 1];
    off += 2;
  } else if (h == 0xda && off + 2 < n) {
    len = (size_t{p[off + 1]} << 8) | p[off + 2];
    off += 3;
  } else {
    return malformed();  // str32 is never written: ids are <= 400 bytes
  }
  if (off + len > n) return malformed();
  stream = body.substr(off, len);
  return {};
}

error decode_event_keys(std::string_view record, const record_origin& origin,
                        msgpack::zone& zone, std::string& stream,
                        std::vector<std::string>& tags) {
  std::string_view body;
  if (auto err = open_event_body(record, origin, body)) return err;
  try {
    zone.clear();
    auto* f = unpack_array(body, zone, event_body_fields);
    stream.assign(as_str(f[1]));
    if (!origin.stream.empty() && stream != origin.stream)
      return corrupt(origin, "record belongs to stream '" + stream + "'");
    as_tags(f[6], tags);
  } catch (const std::exception& e) {
    return corrupt(origin,
                   std::string{"undecodable envelope ("} + e.what() + ")");
  }
  return {};
}

std::string encode_snapshot(const snapshot& snap) {
  std::string out(record_header_size, '\0');
  out.reserve(record_header_size + snap.payload.size() + 64);
  string_sink sink{&out};
  msgpack::packer<string_sink> pk(sink);
  pk.pack_array(snapshot_body_fields);
  pack_str(pk, snap.meta.stream_id);
  pack_str(pk, snap.type);
  pk.pack_uint32(snap.schema_version);
  pack_metadata(pk, snap.metadata);
  pack_bin(pk, snap.payload.data(), snap.payload.size());
  seal_record(out.data(), out.size(), snapshot_record_kind, snap.meta.sequence,
              snap.meta.timestamp_us, 0);
  return out;
}

error decode_snapshot(std::string_view record, const record_origin& origin,
                      snapshot& out) {
  std::string_view body;
  uint64_t previous = 0;
  if (auto err =
          open_record(record, snapshot_record_kind, origin, out.meta.sequence,
                      out.meta.timestamp_us, previous, body))
    return err;
  try {
    msgpack::zone zone;
    auto* f = unpack_array(body, zone, snapshot_body_fields);
    auto stream = as_str(f[0]);
    if (!origin.stream.empty() && stream != origin.stream)
      return corrupt(
          origin, "snapshot belongs to stream '" + std::string{stream} + "'");
    out.meta.stream_id.assign(stream);
    out.type.assign(as_str(f[1]));
    out.schema_version = f[2].as<uint32_t>();
    as_metadata(f[3], out.metadata);
    as_bin(f[4], out.payload);
  } catch (const std::exception& e) {
    return corrupt(origin,
                   std::string{"undecodable snapshot ("} + e.what() + ")");
  }
  return {};
}

std::string shard_stream(uint32_t shard) {
  return "mnemo.shard/" + std::to_string(shard);
}

std::vector<uint8_t> encode_shard_snapshot(const snapshot& snap,
                                           uint64_t keep) {
  std::string out;
  out.reserve(snap.payload.size() + snap.meta.stream_id.size() +
              snap.type.size() + 128);
  string_sink sink{&out};
  msgpack::packer<string_sink> pk(sink);
  pk.pack_map(8);
  pack_str(pk, "stream");
  pack_str(pk, snap.meta.stream_id);
  pack_str(pk, "sequence");
  pk.pack_uint64(snap.meta.sequence);
  pack_str(pk, "timestamp_us");
  pk.pack_int64(snap.meta.timestamp_us);
  pack_str(pk, "type");
  pack_str(pk, snap.type);
  pack_str(pk, "schema_version");
  pk.pack_uint32(snap.schema_version);
  pack_str(pk, "metadata");
  pack_metadata(pk, snap.metadata);
  pack_str(pk, "payload");
  pack_bin(pk, snap.payload.data(), snap.payload.size());
  pack_str(pk, "keep");
  pk.pack_uint64(keep);
  return {out.begin(), out.end()};
}

error decode_shard_snapshot(const std::vector<uint8_t>& payload,
                            snapshot& out, uint64_t& keep) {
  auto bad = [](const std::string& why) {
    return error{errc::corrupt_record,
                 "a replicated snapshot (" + std::string{shard_snapshot_type} +
                     " event) is damaged: " + why};
  };
  try {
    msgpack::zone zone;
    size_t off = 0;
    auto obj = msgpack::unpack(zone, reinterpret_cast<const char*>(payload.data()),
                               payload.size(), off);
    if (off != payload.size() || obj.type != msgpack::type::MAP)
      return bad("not exactly one msgpack map");
    unsigned seen = 0;
    for (uint32_t i = 0; i < obj.via.map.size; ++i) {
      auto& kv = obj.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) return bad("a key is not a string");
      auto key = as_str(kv.key);
      auto& v = kv.val;
      if (key == "stream") {
        out.meta.stream_id.assign(as_str(v));
        seen |= 1u;
      } else if (key == "sequence") {
        out.meta.sequence = v.as<uint64_t>();
        seen |= 2u;
      } else if (key == "timestamp_us") {
        out.meta.timestamp_us = v.as<int64_t>();
        seen |= 4u;
      } else if (key == "type") {
        out.type.assign(as_str(v));
        seen |= 8u;
      } else if (key == "schema_version") {
        out.schema_version = v.as<uint32_t>();
        seen |= 16u;
      } else if (key == "metadata") {
        as_metadata(v, out.metadata);
        seen |= 32u;
      } else if (key == "payload") {
        as_bin(v, out.payload);
        seen |= 64u;
      } else if (key == "keep") {
        keep = v.as<uint64_t>();
        seen |= 128u;
      }
    }
    if (seen != 255u) return bad("a field is missing");
  } catch (const std::exception& e) {
    return bad(std::string{"undecodable ("} + e.what() + ")");
  }
  if (out.meta.stream_id.empty() || out.type.empty())
    return bad("empty stream id or state type");
  if (out.meta.timestamp_us < 0) return bad("negative timestamp");
  return {};
}

}  // namespace mnemo::persistence
