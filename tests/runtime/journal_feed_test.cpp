// The bytes of the journal feed: batches and requests round-trip with
// every envelope field, and malformed bytes from a peer (truncated,
// padded, another kind, random, out of order, more than asked for) are
// refused with an error, never a crash.

#include <boost/test/unit_test.hpp>

#include <random>

#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/journal_feed.hpp"

using namespace mnemo;
namespace feed = runtime::feed;

namespace {

runtime::feed_batch sample() {
  runtime::feed_batch b;
  b.head = 42;
  for (uint64_t pos : {7, 9, 40}) {
    persistence::event_envelope e;
    e.id.bytes[0] = static_cast<uint8_t>(pos);
    e.id.bytes[15] = 0xff;
    e.stream_id = "account-" + std::to_string(pos);
    e.sequence = pos * 2;
    e.position = pos;
    e.type = "account.deposited";
    e.schema_version = 3;
    e.timestamp_us = -5 + static_cast<int64_t>(pos);
    e.correlation_id = "corr";
    e.causation_id = "cause";
    e.tags = {"a", "b"};
    e.metadata = {{"user", "u1"}, {"src", "test"}};
    e.payload = {0x81, 0xa1, 'n', static_cast<uint8_t>(pos)};
    b.events.push_back(e);
  }
  return b;
}

bool refused(const caf::expected<runtime::feed_batch>& r) {
  return !r && runtime::is(r.error(), runtime::errc::invalid_argument);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(journal_feed)

BOOST_AUTO_TEST_CASE(batches_round_trip_every_envelope_field) {
  auto b = sample();
  auto bytes = feed::encode_batch(b);
  auto d = feed::decode_batch(bytes, 5, 3);
  BOOST_REQUIRE(d);
  BOOST_CHECK_EQUAL(d->head, 42u);
  BOOST_REQUIRE_EQUAL(d->events.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    auto& x = b.events[i];
    auto& y = d->events[i];
    BOOST_CHECK(x.id == y.id);
    BOOST_CHECK_EQUAL(x.stream_id, y.stream_id);
    BOOST_CHECK_EQUAL(x.sequence, y.sequence);
    BOOST_CHECK_EQUAL(x.position, y.position);
    BOOST_CHECK_EQUAL(x.type, y.type);
    BOOST_CHECK_EQUAL(x.schema_version, y.schema_version);
    BOOST_CHECK_EQUAL(x.timestamp_us, y.timestamp_us);
    BOOST_CHECK_EQUAL(x.correlation_id, y.correlation_id);
    BOOST_CHECK_EQUAL(x.causation_id, y.causation_id);
    BOOST_CHECK(x.tags == y.tags);
    BOOST_CHECK(x.metadata == y.metadata);
    BOOST_CHECK(x.payload == y.payload);
  }
  auto pull = feed::decode_request(feed::encode_pull(11, 500));
  BOOST_REQUIRE(pull);
  BOOST_CHECK(pull->what == feed::kind::pull);
  BOOST_CHECK_EQUAL(pull->from, 11u);
  BOOST_CHECK_EQUAL(pull->max, 500u);
  auto sub = feed::decode_request(feed::encode_subscribe());
  BOOST_REQUIRE(sub);
  BOOST_CHECK(sub->what == feed::kind::subscribe);
  auto head = feed::decode_head(feed::encode_head(99));
  BOOST_REQUIRE(head);
  BOOST_CHECK(!head->shard);
  BOOST_CHECK_EQUAL(head->head, 99u);
  // The same for a shard's log.
  auto ssub = feed::decode_request(feed::encode_shard_subscribe(7));
  BOOST_REQUIRE(ssub);
  BOOST_CHECK(ssub->what == feed::kind::shard_subscribe);
  BOOST_CHECK_EQUAL(ssub->shard, 7u);
  auto spull = feed::decode_request(feed::encode_shard_pull(3, 12, 40));
  BOOST_REQUIRE(spull);
  BOOST_CHECK(spull->what == feed::kind::shard_pull);
  BOOST_CHECK_EQUAL(spull->shard, 3u);
  BOOST_CHECK_EQUAL(spull->from, 12u);
  BOOST_CHECK_EQUAL(spull->max, 40u);
  auto shead = feed::decode_head(feed::encode_shard_head(5, 77));
  BOOST_REQUIRE(shead);
  BOOST_REQUIRE(shead->shard);
  BOOST_CHECK_EQUAL(*shead->shard, 5u);
  BOOST_CHECK_EQUAL(shead->head, 77u);
}

BOOST_AUTO_TEST_CASE(shard_source_names) {
  BOOST_CHECK_EQUAL(runtime::shard_source(0), "shard/0");
  BOOST_CHECK_EQUAL(runtime::shard_source(4095), "shard/4095");
  BOOST_CHECK(runtime::parse_shard_source("shard/17") == 17u);
  BOOST_CHECK(runtime::parse_shard_source("shard/4294967295") == UINT32_MAX);
  for (auto bad : {"shard/", "shard/01", "shard/-1", "shard/4294967296",
                   "shard/1x", "n1", "Shard/1", "shard/ 1", "shard/1/2"})
    BOOST_CHECK_MESSAGE(!runtime::parse_shard_source(bad), bad);
}

BOOST_AUTO_TEST_CASE(batches_that_break_the_pull_contract_are_refused) {
  auto b = sample();
  // More events than asked for.
  BOOST_CHECK(refused(feed::decode_batch(feed::encode_batch(b), 5, 2)));
  // Events before the requested position.
  BOOST_CHECK(refused(feed::decode_batch(feed::encode_batch(b), 8, 10)));
  // Out of order.
  auto swapped = b;
  std::swap(swapped.events[0], swapped.events[1]);
  BOOST_CHECK(refused(feed::decode_batch(feed::encode_batch(swapped), 1, 10)));
  // Beyond the head.
  auto ahead = b;
  ahead.head = 39;
  BOOST_CHECK(refused(feed::decode_batch(feed::encode_batch(ahead), 1, 10)));
}

BOOST_AUTO_TEST_CASE(malformed_bytes_are_refused) {
  auto bytes = feed::encode_batch(sample());
  // Every truncation, and padding.
  for (size_t n = 0; n < bytes.size(); ++n)
    BOOST_CHECK(refused(feed::decode_batch(
        feed::bytes(bytes.begin(), bytes.begin() + static_cast<long>(n)), 1,
        10)));
  auto padded = bytes;
  padded.push_back(0);
  BOOST_CHECK(refused(feed::decode_batch(padded, 1, 10)));
  // Another kind.
  BOOST_CHECK(refused(feed::decode_batch(feed::encode_head(3), 1, 10)));
  BOOST_CHECK(!feed::decode_head(bytes));
  BOOST_CHECK(!feed::decode_request(bytes));
  auto sub = feed::encode_subscribe();
  sub.push_back(1);
  BOOST_CHECK(!feed::decode_request(sub));
  auto pull = feed::encode_pull(1, 2);
  pull.pop_back();
  BOOST_CHECK(!feed::decode_request(pull));
  auto spull = feed::encode_shard_pull(1, 2, 3);
  spull.pop_back();
  BOOST_CHECK(!feed::decode_request(spull));
  auto shead = feed::encode_shard_head(1, 2);
  shead.push_back(0);
  BOOST_CHECK(!feed::decode_head(shead));
  // Random bytes, and random corruption of a good batch.
  std::mt19937 rng{7};
  for (int i = 0; i < 2000; ++i) {
    feed::bytes junk(rng() % 64);
    for (auto& c : junk) c = static_cast<char>(rng());
    if (!junk.empty() && i % 2 == 0) junk[0] = 3;  // the batch kind
    auto r = feed::decode_batch(junk, 1, 1000);
    BOOST_CHECK(refused(r) || (r && r->events.size() <= 1000));
    auto flipped = bytes;
    flipped[1 + rng() % (flipped.size() - 1)] ^=
        static_cast<char>(1 + rng() % 255);
    auto f = feed::decode_batch(flipped, 1, 10);
    BOOST_CHECK(refused(f) || f);  // no crash, no exception
  }
}

BOOST_AUTO_TEST_SUITE_END()
