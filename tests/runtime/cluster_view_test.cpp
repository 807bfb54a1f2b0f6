// The cluster's configured shape: member parsing, view checks, the shard of
// an entity and the owner of a shard (balanced, stable, and moving only
// what must move when the member list changes).

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>

#include "mnemo/runtime/cluster_view.hpp"

using namespace mnemo::runtime;

namespace {

std::vector<cluster_member> members(std::initializer_list<const char*> specs) {
  std::vector<cluster_member> result;
  for (auto s : specs) {
    std::string why;
    auto m = parse_member(s, why);
    BOOST_REQUIRE_MESSAGE(m, why);
    result.push_back(*m);
  }
  return result;
}

cluster_view view_of(std::initializer_list<const char*> specs,
                     uint32_t shards) {
  std::string why;
  auto v = cluster_view::make(members(specs), shards, why);
  BOOST_REQUIRE_MESSAGE(v, why);
  return *v;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_view_suite)

BOOST_AUTO_TEST_CASE(members_parse_or_say_why_not) {
  std::string why;
  auto m = parse_member("n1@127.0.0.1:7001", why);
  BOOST_REQUIRE(m);
  BOOST_CHECK_EQUAL(m->id, "n1");
  BOOST_CHECK_EQUAL(m->host, "127.0.0.1");
  BOOST_CHECK_EQUAL(m->port, 7001);
  BOOST_CHECK_EQUAL(m->to_string(), "n1@127.0.0.1:7001");
  for (auto bad : {"", "n1", "n1@host", "@h:1", "n1@:1", "n1@h:0", "n1@h:65536",
                   "n1@h:x1", "n 1@h:1", "n1@h:123456"}) {
    why.clear();
    BOOST_CHECK_MESSAGE(!parse_member(bad, why), bad);
    BOOST_CHECK(!why.empty());
  }
}

BOOST_AUTO_TEST_CASE(views_refuse_duplicates_and_bad_shard_counts) {
  std::string why;
  BOOST_CHECK(!cluster_view::make({}, 8, why));
  BOOST_CHECK(!cluster_view::make(members({"a@h:1", "a@h:2"}), 8, why));
  BOOST_CHECK_NE(why.find("twice"), std::string::npos);
  BOOST_CHECK(!cluster_view::make(members({"a@h:1", "b@h:1"}), 8, why));
  BOOST_CHECK(!cluster_view::make(members({"a@h:1"}), 0, why));
  BOOST_CHECK(!cluster_view::make(members({"a@h:1"}), 65537, why));
}

BOOST_AUTO_TEST_CASE(the_fingerprint_ignores_order_and_addresses_not_ids) {
  auto x = view_of({"a@h:1", "b@h:2", "c@h:3"}, 64);
  auto y = view_of({"c@h:3", "a@h:1", "b@h:2"}, 64);
  BOOST_CHECK_EQUAL(x.fingerprint(), y.fingerprint());
  BOOST_CHECK_NE(x.fingerprint(),
                 view_of({"a@h:1", "b@h:2"}, 64).fingerprint());
  BOOST_CHECK_NE(x.fingerprint(),
                 view_of({"a@h:1", "b@h:2", "c@h:3"}, 32).fingerprint());
  BOOST_CHECK_NE(x.fingerprint(),
                 view_of({"a@h:1", "b@h:2", "d@h:3"}, 64).fingerprint());
  // A member on another address (a replacement machine) is the same view.
  BOOST_CHECK_EQUAL(x.fingerprint(),
                    view_of({"a@h:1", "b@h:2", "c@g:4"}, 64).fingerprint());
}

BOOST_AUTO_TEST_CASE(ownership_is_a_pure_function_of_the_view) {
  auto x = view_of({"a@h:1", "b@h:2", "c@h:3"}, 256);
  auto y = view_of({"b@h:2", "c@h:3", "a@h:1"}, 256);
  for (uint32_t s = 0; s < 256; ++s)
    BOOST_CHECK_EQUAL(x.owner_of(s), y.owner_of(s));
  // Pinned values: the placement of data must never change silently.
  BOOST_CHECK_EQUAL(x.shard_of("account", "a1"), 16u);
  BOOST_CHECK_EQUAL(x.shard_of("order", "o-17"), 246u);
  BOOST_CHECK_EQUAL(
      x.owner_of(0) + x.owner_of(1) + x.owner_of(2) + x.owner_of(3), "acaa");
  std::map<std::string, size_t> count;
  for (uint32_t s = 0; s < 256; ++s) ++count[x.owner_of(s)];
  for (auto& [member, n] : count) {
    BOOST_TEST_MESSAGE(member << " owns " << n << " of 256 shards");
    BOOST_CHECK_GE(n, 50u);
    BOOST_CHECK_LE(n, 120u);
    BOOST_CHECK_EQUAL(x.shards_of(member).size(), n);
  }
  // Entities spread over the shards.
  std::map<uint32_t, size_t> per_shard;
  for (int i = 0; i < 25600; ++i)
    ++per_shard[x.shard_of("account", "a" + std::to_string(i))];
  BOOST_CHECK_EQUAL(per_shard.size(), 256u);
  for (auto& [shard, n] : per_shard) BOOST_CHECK_LE(n, 200u);
}

BOOST_AUTO_TEST_CASE(replicas_start_with_the_owner_and_move_only_what_they_must) {
  auto x = view_of({"a@h:1", "b@h:2", "c@h:3", "d@h:4", "e@h:5"}, 64);
  auto y = view_of({"a@h:1", "b@h:2", "c@h:3", "d@h:4"}, 64);
  std::map<std::string, size_t> held;
  for (uint32_t s = 0; s < 64; ++s) {
    auto r = x.replicas_of(s, 3);
    BOOST_REQUIRE_EQUAL(r.size(), 3u);
    BOOST_CHECK_EQUAL(r[0], x.owner_of(s));
    BOOST_CHECK(r[0] != r[1] && r[1] != r[2] && r[0] != r[2]);
    for (auto& m : r) ++held[m];
    BOOST_CHECK_EQUAL(x.replicas_of(s, 9).size(), 5u);
    // Without member e, the shards e did not hold keep their replicas.
    if (std::find(r.begin(), r.end(), "e") == r.end())
      BOOST_CHECK(y.replicas_of(s, 3) == r);
  }
  for (auto& [member, n] : held) {
    BOOST_TEST_MESSAGE(member << " holds " << n << " of 64 shards");
    BOOST_CHECK_GE(n, 25u);
  }
}

BOOST_AUTO_TEST_CASE(a_membership_change_moves_only_what_it_must) {
  auto three = view_of({"a@h:1", "b@h:2", "c@h:3"}, 512);
  auto two = view_of({"a@h:1", "b@h:2"}, 512);
  auto four = view_of({"a@h:1", "b@h:2", "c@h:3", "d@h:4"}, 512);
  size_t moved_to_d = 0;
  for (uint32_t s = 0; s < 512; ++s) {
    // Removing c moves c's shards only.
    if (three.owner_of(s) != "c")
      BOOST_CHECK_EQUAL(two.owner_of(s), three.owner_of(s));
    // Adding d moves shards to d only, about a quarter of them.
    if (four.owner_of(s) != three.owner_of(s)) {
      BOOST_CHECK_EQUAL(four.owner_of(s), "d");
      ++moved_to_d;
    }
  }
  BOOST_CHECK_GE(moved_to_d, 90u);
  BOOST_CHECK_LE(moved_to_d, 170u);
}

BOOST_AUTO_TEST_SUITE_END()
