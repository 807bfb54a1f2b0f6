#include "mnemo/runtime/journal_feed.hpp"

#include <exception>

#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/wire.hpp"

namespace mnemo::runtime {

std::string shard_source(uint32_t shard) {
  return "shard/" + std::to_string(shard);
}

std::optional<uint32_t> parse_shard_source(const std::string& source) {
  constexpr std::string_view prefix = "shard/";
  if (source.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  return parse_shard_number(std::string_view{source}.substr(prefix.size()));
}

std::optional<uint32_t> parse_shard_number(std::string_view digits) {
  if (digits.empty() || digits.size() > 10 ||
      (digits.size() > 1 && digits[0] == '0'))
    return std::nullopt;
  uint64_t n = 0;
  for (auto c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(n);
}

}  // namespace mnemo::runtime

namespace mnemo::runtime::feed {
namespace {

// Every field of an envelope, in a fixed order, for CAF's binary format.
template <class Processor>
caf::error process(Processor& f, persistence::event_envelope& env) {
  for (auto& b : env.id.bytes)
    if (auto err = f(b)) return err;
  return f(env.stream_id, env.sequence, env.position, env.type,
           env.schema_version, env.timestamp_us, env.correlation_id,
           env.causation_id, env.tags, env.metadata, env.payload);
}

caf::error bad(const std::string& what) {
  return make_error(errc::invalid_argument, "journal feed: " + what);
}

caf::error expect_kind(const bytes& buf, kind k) {
  if (wire::kind_of(buf) != static_cast<uint8_t>(k))
    return bad("unexpected payload kind " +
               std::to_string(static_cast<int>(wire::kind_of(buf))));
  return {};
}

}  // namespace

bytes encode_subscribe() {
  bytes buf{static_cast<char>(kind::subscribe)};
  return buf;
}

bytes encode_pull(uint64_t from, uint64_t max) {
  return wire::pack(static_cast<uint8_t>(kind::pull), from, max);
}

bytes encode_head(uint64_t head) {
  return wire::pack(static_cast<uint8_t>(kind::head), head);
}

bytes encode_shard_subscribe(uint32_t shard) {
  return wire::pack(static_cast<uint8_t>(kind::shard_subscribe), shard);
}

bytes encode_shard_pull(uint32_t shard, uint64_t from, uint64_t max) {
  return wire::pack(static_cast<uint8_t>(kind::shard_pull), shard, from, max);
}

bytes encode_shard_head(uint32_t shard, uint64_t head) {
  return wire::pack(static_cast<uint8_t>(kind::shard_head), shard, head);
}

bytes encode_batch(const feed_batch& batch) {
  bytes buf;
  caf::binary_serializer sink{nullptr, buf};
  auto k = static_cast<uint8_t>(kind::batch);
  auto head = batch.head;
  auto n = static_cast<uint64_t>(batch.events.size());
  if (sink(k, head, n)) return {};
  // `process` serves both directions; a serializer only reads.
  for (auto& env : batch.events)
    if (process(sink, const_cast<persistence::event_envelope&>(env))) return {};
  return buf;
}

caf::expected<request> decode_request(const bytes& buf) {
  request r;
  if (wire::kind_of(buf) == static_cast<uint8_t>(kind::subscribe)) {
    if (buf.size() != 1) return bad("subscribe request with trailing bytes");
    return r;
  }
  if (wire::kind_of(buf) == static_cast<uint8_t>(kind::shard_subscribe)) {
    r.what = kind::shard_subscribe;
    if (auto err = wire::unpack(buf, r.shard)) return err;
    return r;
  }
  if (wire::kind_of(buf) == static_cast<uint8_t>(kind::shard_pull)) {
    r.what = kind::shard_pull;
    if (auto err = wire::unpack(buf, r.shard, r.from, r.max)) return err;
    return r;
  }
  if (auto err = expect_kind(buf, kind::pull)) return err;
  r.what = kind::pull;
  if (auto err = wire::unpack(buf, r.from, r.max)) return err;
  return r;
}

caf::expected<head_notice> decode_head(const bytes& buf) {
  head_notice n;
  if (wire::kind_of(buf) == static_cast<uint8_t>(kind::shard_head)) {
    uint32_t shard = 0;
    if (auto err = wire::unpack(buf, shard, n.head)) return err;
    n.shard = shard;
    return n;
  }
  if (auto err = expect_kind(buf, kind::head)) return err;
  if (auto err = wire::unpack(buf, n.head)) return err;
  return n;
}

caf::expected<feed_batch> decode_batch(const bytes& buf, uint64_t from,
                                       uint64_t max) {
  if (auto err = expect_kind(buf, kind::batch)) return err;
  feed_batch result;
  try {
    caf::binary_deserializer source{nullptr, buf.data() + 1, buf.size() - 1};
    uint64_t n = 0;
    if (auto err = source(result.head, n))
      return bad("malformed batch: " + to_string(err));
    if (n > max)
      return bad(std::to_string(n) + " events where at most " +
                 std::to_string(max) + " were asked for");
    uint64_t previous = from == 0 ? 0 : from - 1;
    for (uint64_t i = 0; i < n; ++i) {
      persistence::event_envelope env;
      if (auto err = process(source, env))
        return bad("malformed event " + std::to_string(i) +
                   " of the batch: " + to_string(err));
      if (env.position <= previous || env.position > result.head)
        return bad("event " + std::to_string(i) + " has position " +
                   std::to_string(env.position) + " after " +
                   std::to_string(previous) + " with head " +
                   std::to_string(result.head));
      previous = env.position;
      result.events.push_back(std::move(env));
    }
    if (source.remaining() != 0)
      return bad("batch has " + std::to_string(source.remaining()) +
                 " trailing bytes");
  } catch (const std::exception& e) {
    return bad(std::string{"malformed batch: "} + e.what());
  }
  return result;
}

}  // namespace mnemo::runtime::feed
