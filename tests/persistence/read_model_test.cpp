#include "mnemo/persistence/read_model.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "test_support.hpp"

namespace mp = mnemo::persistence;

namespace {

mp::error put_raw(mp::journal& j, std::string_view table, std::string_view key,
                  std::string_view value) {
  return j.write([&](mp::write_txn& txn) {
    return mp::table_store::put_in(txn, table, key, value);
  });
}

struct order {
  std::string customer;
  int64_t amount = 0;
  std::string status;
  MSGPACK_DEFINE_MAP(customer, amount, status)
};

// Asserts that sorting `xs` by value and by encoded key agree, and that
// every key decodes back to itself.
template <class T>
void check_order(std::vector<T> xs) {
  std::sort(xs.begin(), xs.end());
  std::vector<std::string> encoded;
  for (auto& x : xs) {
    encoded.push_back(mp::encode_key(x));
    T back{};
    BOOST_TEST(mp::decode_key(encoded.back(), back));
    BOOST_TEST((back == x));
  }
  for (size_t i = 1; i < xs.size(); ++i)
    if (xs[i - 1] < xs[i]) BOOST_TEST((encoded[i - 1] < encoded[i]));
}

// Collects the keys a typed scan visits.
template <class K, class V, class Scan>
std::vector<K> keys_of(mp::journal& j, Scan&& scan) {
  std::vector<K> result;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = scan(txn, [&](const K& k, const V&) {
      result.push_back(k);
      return true;
    });
    return res ? mp::error{} : res.error();
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return result;
}

// Runs `fn` in a write and requires that it succeeded.
template <class F>
void write_ok(mp::journal& j, F&& fn) {
  auto err = j.write(std::forward<F>(fn));
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
}

// The primary keys that index `index` lists under `ik`.
template <class IK, class K, class V>
std::vector<K> index_keys(mp::journal& j,
                          const mp::secondary_index<IK, K, V>& index,
                          const IK& ik) {
  std::vector<K> result;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = index.keys(txn, ik);
    if (!res) return res.error();
    result = *res;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return result;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(read_model)

BOOST_AUTO_TEST_CASE(key_codec_preserves_order) {
  using std::numeric_limits;
  check_order<uint64_t>({0, 1, 255, 256, 65535, uint64_t{1} << 32,
                         numeric_limits<uint64_t>::max()});
  check_order<uint16_t>({0, 1, 255, 256, 65535});
  check_order<int64_t>({numeric_limits<int64_t>::min(), -65536, -256, -1, 0, 1,
                        255, numeric_limits<int64_t>::max()});
  check_order<int32_t>({numeric_limits<int32_t>::min(), -2, -1, 0, 1,
                        numeric_limits<int32_t>::max()});
  check_order<int8_t>({-128, -1, 0, 1, 127});
  BOOST_TEST(mp::encode_key(int32_t{-1}) == std::string("\x7f\xff\xff\xff"));
  BOOST_TEST(mp::encode_key(std::string{"ab"}) == "ab");
  using pair = std::pair<std::string, uint64_t>;
  check_order<pair>({{"a", 2},
                     {"a", 10},
                     {"ab", 1},
                     {"", 7},
                     {std::string{"a\0", 2}, 0},
                     {"a\x01", 0},
                     {"\xff", 0}});
  BOOST_TEST((mp::encode_key(pair{"a", 10}) < mp::encode_key(pair{"ab", 1})));
  BOOST_TEST((mp::encode_key(pair{"a", 2}) < mp::encode_key(pair{"a", 10})));
  // Random composites over an alphabet full of escape bytes.
  std::mt19937 rng{42};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::tuple<std::string, int32_t, std::string>> xs;
  const char alphabet[] = {'\0', '\x01', 'a', '\xff'};
  for (int i = 0; i < 2000; ++i) {
    std::string a;
    std::string b;
    for (auto len = pick(4); len > 0; --len) a.push_back(alphabet[pick(4)]);
    for (auto len = pick(3); len > 0; --len) b.push_back(alphabet[pick(4)]);
    xs.emplace_back(a, static_cast<int32_t>(pick(5)) - 2, b);
  }
  // std::string compares bytes as unsigned char, like LMDB.
  std::sort(xs.begin(), xs.end());
  for (size_t i = 1; i < xs.size(); ++i)
    if (xs[i - 1] != xs[i])
      BOOST_TEST((mp::encode_key(xs[i - 1]) < mp::encode_key(xs[i])));
  pair back;
  BOOST_TEST(!mp::decode_key(std::string{"a\0", 2}, back));
  BOOST_TEST(!mp::decode_key(mp::encode_key(pair{"a", 1}) + "x", back));
}

BOOST_FIXTURE_TEST_CASE(typed_prefix_and_range_scans,
                        mnemo::test::journal_fixture) {
  using key = std::pair<std::string, uint64_t>;
  mp::table<key, order> orders{"orders"};
  mp::table<int64_t, int> temps{"temps"};
  using tkey = std::tuple<std::string, int32_t, std::string>;
  mp::table<tkey, int> events{"events"};
  auto err = j->write([&](mp::write_txn& txn) -> mp::error {
    for (auto k : {key{"b", 0}, key{"ab", 1}, key{"a", 10}, key{"a", 2}})
      if (auto e = orders.put(txn, k, order{k.first, 1, "new"})) return e;
    for (int64_t t : {5, -1, 0, -10})
      if (auto e = temps.put(txn, t, static_cast<int>(t))) return e;
    for (auto& k : {tkey{"x", -1, "b"}, tkey{"x", -1, "a"}, tkey{"x", 1, "a"},
                    tkey{"xy", -1, "a"}})
      if (auto e = events.put(txn, k, 0)) return e;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  auto by_prefix = [&](std::string p) {
    return keys_of<key, order>(*j, [&](mp::read_txn& txn, auto fn) {
      return orders.scan_prefix(txn, p, mp::table_store::unlimited, fn);
    });
  };
  BOOST_TEST((by_prefix("a") == std::vector<key>{{"a", 2}, {"a", 10}}));
  BOOST_TEST((by_prefix("ab") == std::vector<key>{{"ab", 1}}));
  BOOST_TEST(by_prefix("c").empty());
  auto by_range = [&](std::optional<key> from, std::optional<key> to,
                      size_t limit) {
    return keys_of<key, order>(*j, [&](mp::read_txn& txn, auto fn) {
      return orders.range(txn, from, to, limit, fn);
    });
  };
  BOOST_TEST((by_range(key{"a", 3}, key{"b", 0}, 10) ==
              std::vector<key>{{"a", 10}, {"ab", 1}}));
  BOOST_TEST((by_range({}, {}, 3) ==
              std::vector<key>{{"a", 2}, {"a", 10}, {"ab", 1}}));
  auto t = keys_of<int64_t, int>(*j, [&](mp::read_txn& txn, auto fn) {
    return temps.range(txn, int64_t{-5}, int64_t{5}, mp::table_store::unlimited,
                       fn);
  });
  BOOST_TEST((t == std::vector<int64_t>{-1, 0}));
  auto e = keys_of<tkey, int>(*j, [&](mp::read_txn& txn, auto fn) {
    return events.scan_prefix(txn, std::tuple<std::string, int32_t>{"x", -1},
                              mp::table_store::unlimited, fn);
  });
  BOOST_TEST((e == std::vector<tkey>{{"x", -1, "a"}, {"x", -1, "b"}}));
  uint64_t n = 0;
  err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto res = orders.count(txn);
    if (!res) return res.error();
    n = *res;
    return {};
  });
  BOOST_TEST(n == 4u);
}

BOOST_FIXTURE_TEST_CASE(secondary_index_follows_updates_and_erases,
                        mnemo::test::journal_fixture) {
  mp::table<std::string, order> orders{"orders"};
  auto by_customer = orders.add_index<std::string>(
      "by_customer", [](const order& o) { return std::optional{o.customer}; });
  // Sparse: only open orders are indexed by amount.
  auto open_by_amount = orders.add_index<int64_t>(
      "open_by_amount", [](const order& o) -> std::optional<int64_t> {
        if (o.status != "open") return std::nullopt;
        return o.amount;
      });
  auto write = [&](auto fn) { write_ok(*j, fn); };
  auto customer_keys = [&](const std::string& c) {
    return index_keys(*j, by_customer, c);
  };
  write([&](mp::write_txn& txn) -> mp::error {
    if (auto e = orders.put(txn, "o2", {"carol", 20, "open"})) return e;
    if (auto e = orders.put(txn, "o1", {"carol", 10, "open"})) return e;
    return orders.put(txn, "o3", {"dave", 10, "closed"});
  });
  BOOST_TEST((customer_keys("carol") == std::vector<std::string>{"o1", "o2"}));
  // Moving o2 to dave, inside the write, is visible to lookups at once.
  write([&](mp::write_txn& txn) -> mp::error {
    if (auto e = orders.put(txn, "o2", {"dave", 20, "closed"})) return e;
    auto rows = by_customer.lookup(txn, "dave");
    if (!rows) return rows.error();
    BOOST_TEST(rows->size() == 2u);
    return {};
  });
  BOOST_TEST((customer_keys("carol") == std::vector<std::string>{"o1"}));
  BOOST_TEST((customer_keys("dave") == std::vector<std::string>{"o2", "o3"}));
  auto err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto open = open_by_amount.lookup(txn, 10);
    if (!open) return open.error();
    BOOST_TEST(open->size() == 1u);
    BOOST_TEST(open->at(0).first == "o1");
    BOOST_TEST(open->at(0).second.customer == "carol");
    auto none = open_by_amount.keys(txn, 20);
    if (!none) return none.error();
    BOOST_TEST(none->empty());
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  write([&](mp::write_txn& txn) -> mp::error {
    auto gone = orders.erase(txn, "o1");
    if (!gone) return gone.error();
    BOOST_TEST(*gone);
    auto again = orders.erase(txn, "o1");
    if (!again) return again.error();
    BOOST_TEST(!*again);
    return {};
  });
  BOOST_TEST(customer_keys("carol").empty());
  reopen();
  BOOST_TEST((customer_keys("dave") == std::vector<std::string>{"o2", "o3"}));
  // Clearing the table clears its indexes.
  write([&](mp::write_txn& txn) -> mp::error {
    auto res = orders.clear(txn);
    if (!res) return res.error();
    BOOST_TEST(*res == 2u);
    return {};
  });
  BOOST_TEST(customer_keys("dave").empty());
  err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto names = mp::table_store::tables_in(txn);
    if (!names) return names.error();
    BOOST_TEST(names->empty());
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
}

BOOST_FIXTURE_TEST_CASE(update_reads_once_changes_and_keeps_indexes,
                        mnemo::test::journal_fixture) {
  mp::table<std::string, order> orders{"orders"};
  auto by_customer = orders.add_index<std::string>(
      "by_customer", [](const order& o) { return std::optional{o.customer}; });
  auto write = [&](auto fn) { write_ok(*j, fn); };
  auto keys_of_customer = [&](const std::string& c) {
    return index_keys(*j, by_customer, c);
  };
  auto row = [&](const std::string& key) {
    std::optional<order> result;
    auto err = j->read([&](mp::read_txn& txn) -> mp::error {
      auto res = orders.get(txn, key);
      if (!res) return res.error();
      result = *res;
      return {};
    });
    BOOST_REQUIRE_MESSAGE(!err, err.to_string());
    return result;
  };
  // Absent row: the change sees nothing; leaving it empty writes nothing.
  write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(
        txn, "o1", [](std::optional<order>& o) { BOOST_TEST(!o.has_value()); });
  });
  BOOST_TEST(!row("o1").has_value());
  // Creating, then changing: the index follows, once per row.
  write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(txn, "o1", [](std::optional<order>& o) {
      o = order{"carol", 10, "open"};
    });
  });
  write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(txn, "o1", [](std::optional<order>& o) {
      BOOST_REQUIRE(o.has_value());
      BOOST_TEST(o->amount == 10);
      o->amount += 5;
    });
  });
  BOOST_TEST(row("o1")->amount == 15);
  BOOST_TEST((keys_of_customer("carol") == std::vector<std::string>{"o1"}));
  write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(txn, "o1",
                         [](std::optional<order>& o) { o->customer = "dave"; });
  });
  BOOST_TEST(keys_of_customer("carol").empty());
  BOOST_TEST((keys_of_customer("dave") == std::vector<std::string>{"o1"}));
  // Emptying the optional deletes the row and its index entries.
  write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(txn, "o1", [](std::optional<order>& o) { o.reset(); });
  });
  BOOST_TEST(!row("o1").has_value());
  BOOST_TEST(keys_of_customer("dave").empty());
  // A row that does not decode is an error, and the change does not run.
  BOOST_REQUIRE(!put_raw(*j, "orders", "o-bad", "\xc1garbage"));
  bool ran = false;
  auto err = j->write([&](mp::write_txn& txn) -> mp::error {
    return orders.update(txn, "o-bad",
                         [&](std::optional<order>&) { ran = true; });
  });
  BOOST_TEST(err.code() == mp::errc::decode_failed);
  BOOST_TEST(!ran);
}

BOOST_FIXTURE_TEST_CASE(corrupt_value_is_a_decode_error,
                        mnemo::test::journal_fixture) {
  mp::table<std::string, order> orders{"orders"};
  BOOST_REQUIRE(!put_raw(*j, "orders", "o-7", "\xc1garbage"));
  auto err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto res = orders.get(txn, "o-7");
    return res ? mp::error{} : res.error();
  });
  BOOST_TEST(err.code() == mp::errc::decode_failed);
  BOOST_TEST(err.message().find("'orders'") != std::string::npos);
  BOOST_TEST(err.message().find("'o-7'") != std::string::npos);
  err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto res = orders.scan_prefix(txn, "", mp::table_store::unlimited,
                                  [](auto&, auto&) { return true; });
    return res ? mp::error{} : res.error();
  });
  BOOST_TEST(err.code() == mp::errc::decode_failed);
  // A value of another shape is reported the same way.
  BOOST_REQUIRE(!put_raw(*j, "orders", "o-8", "\x92\x01\x02"));
  err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto res = orders.get(txn, "o-8");
    return res ? mp::error{} : res.error();
  });
  BOOST_TEST(err.code() == mp::errc::decode_failed);
  BOOST_TEST(err.message().find("'o-8'") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
