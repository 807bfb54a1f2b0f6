#include "mnemo/persistence/table_store.hpp"

#include <cstdint>
#include <future>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/read_model.hpp"
#include "test_support.hpp"

namespace mp = mnemo::persistence;
using ts = mp::table_store;

namespace {

using entries = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string> get_of(mp::journal& j, std::string_view table,
                                  std::string_view key) {
  std::optional<std::string> result;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = ts::get_in(txn, table, key);
    if (!res) return std::move(res).error();
    result = *res;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return result;
}

entries scan_of(mp::journal& j, std::string_view table, std::string_view from,
                std::string_view to, size_t limit = ts::unlimited) {
  entries result;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = ts::scan_in(txn, table, from, to, limit,
                           [&](std::string_view k, std::string_view v) {
                             result.emplace_back(k, v);
                             return true;
                           });
    return res ? mp::error{} : res.error();
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return result;
}

entries prefix_of(mp::journal& j, std::string_view table,
                  std::string_view prefix) {
  entries result;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = ts::scan_prefix_in(txn, table, prefix, ts::unlimited,
                                  [&](std::string_view k, std::string_view v) {
                                    result.emplace_back(k, v);
                                    return true;
                                  });
    return res ? mp::error{} : res.error();
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return result;
}

uint64_t count_of(mp::journal& j, std::string_view table) {
  uint64_t n = 0;
  auto err = j.read([&](mp::read_txn& txn) -> mp::error {
    auto res = ts::count_in(txn, table);
    if (!res) return std::move(res).error();
    n = *res;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  return n;
}

mp::error put_all(mp::journal& j, std::string_view table, const entries& xs) {
  return j.write([&](mp::write_txn& txn) -> mp::error {
    for (auto& [k, v] : xs)
      if (auto err = ts::put_in(txn, table, k, v)) return err;
    return {};
  });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(table_store)

BOOST_FIXTURE_TEST_CASE(put_get_erase_round_trip,
                        mnemo::test::journal_fixture) {
  std::string binary{"v\0\xff\x01", 4};
  BOOST_REQUIRE(!put_all(*j, "accounts", {{"a-1", "10"}, {"", binary}}));
  BOOST_TEST(get_of(*j, "accounts", "a-1").value_or("-") == "10");
  BOOST_TEST(get_of(*j, "accounts", "").value_or("-") == binary);
  BOOST_TEST(!get_of(*j, "accounts", "a-2"));
  BOOST_TEST(!get_of(*j, "other", "a-1"));
  BOOST_REQUIRE(!put_all(*j, "accounts", {{"a-1", "11"}}));
  BOOST_TEST(get_of(*j, "accounts", "a-1").value_or("-") == "11");
  std::vector<bool> existed;
  auto err = j->write([&](mp::write_txn& txn) -> mp::error {
    for (auto key : {"a-1", "a-1", "never"}) {
      auto res = ts::erase_in(txn, "accounts", key);
      if (!res) return std::move(res).error();
      existed.push_back(*res);
    }
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST((existed == std::vector<bool>{true, false, false}));
  BOOST_TEST(!get_of(*j, "accounts", "a-1"));
  BOOST_TEST(count_of(*j, "accounts") == 1u);
}

BOOST_FIXTURE_TEST_CASE(reads_inside_a_write_see_its_own_writes,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!put_all(*j, "t", {{"old", "1"}}));
  std::optional<std::string> own;
  std::optional<std::string> outside;
  uint64_t own_count = 0;
  entries own_scan;
  auto err = j->write([&](mp::write_txn& txn) -> mp::error {
    if (auto e = ts::put_in(txn, "t", "new", "2")) return e;
    if (auto e = ts::erase_in(txn, "t", "old"); !e) return e.error();
    own = *ts::get_in(txn, "t", "new");
    own_count = *ts::count_in(txn, "t");
    auto res = ts::scan_prefix_in(txn, "t", "", ts::unlimited,
                                  [&](std::string_view k, std::string_view v) {
                                    own_scan.emplace_back(k, v);
                                    return true;
                                  });
    if (!res) return res.error();
    // A reader outside the transaction still sees the last commit.
    return j->read([&](mp::read_txn& rtxn) -> mp::error {
      auto r = ts::get_in(rtxn, "t", "new");
      if (!r) return r.error();
      outside = *r;
      return {};
    });
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST(own.value_or("-") == "2");
  BOOST_TEST(own_count == 1u);
  BOOST_TEST((own_scan == entries{{"new", "2"}}));
  BOOST_TEST(!outside);
  BOOST_TEST(get_of(*j, "t", "new").value_or("-") == "2");
  BOOST_TEST(!get_of(*j, "t", "old"));
}

BOOST_FIXTURE_TEST_CASE(failing_write_rolls_back_only_its_own_writes,
                        mnemo::test::journal_fixture) {
  // Two writes queued back to back usually share one group commit; either
  // way the failing one must leave the other untouched.
  std::promise<mp::error> first;
  std::promise<mp::error> second;
  j->write(
      [](mp::write_txn& txn) -> mp::error {
        if (auto err = ts::put_in(txn, "view-a", "k", "a")) return err;
        return mp::offset_store::store_in(txn, "proj-a", 5);
      },
      [&](mp::error err) { first.set_value(std::move(err)); });
  j->write(
      [](mp::write_txn& txn) -> mp::error {
        if (auto err = ts::put_in(txn, "view-b", "k", "b")) return err;
        if (auto err = ts::put_in(txn, "view-a", "k", "clobbered")) return err;
        if (auto err = mp::offset_store::store_in(txn, "proj-b", 9)) return err;
        return mnemo::test::simulated_failure();
      },
      [&](mp::error err) { second.set_value(std::move(err)); });
  BOOST_TEST(!first.get_future().get());
  BOOST_TEST(second.get_future().get().code() == mp::errc::invalid_argument);
  BOOST_TEST(get_of(*j, "view-a", "k").value_or("-") == "a");
  BOOST_TEST(!get_of(*j, "view-b", "k"));
  BOOST_TEST(*j->offsets().load("proj-a") == 5u);
  BOOST_TEST(*j->offsets().load("proj-b") == 0u);
}

BOOST_FIXTURE_TEST_CASE(table_writes_and_offset_commit_atomically,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->offsets().store("balances", 10));
  auto update = [&](uint64_t offset, bool fail) {
    return j->write([=](mp::write_txn& txn) -> mp::error {
      if (auto err =
              ts::put_in(txn, "balances", "acc-1", std::to_string(offset)))
        return err;
      if (auto err = mp::offset_store::store_in(txn, "balances", offset))
        return err;
      return fail ? mnemo::test::simulated_failure() : mp::error{};
    });
  };
  BOOST_TEST(update(11, true).code() == mp::errc::invalid_argument);
  BOOST_TEST(!get_of(*j, "balances", "acc-1"));
  BOOST_TEST(*j->offsets().load("balances") == 10u);
  BOOST_REQUIRE(!update(12, false));
  BOOST_TEST(get_of(*j, "balances", "acc-1").value_or("-") == "12");
  BOOST_TEST(*j->offsets().load("balances") == 12u);
}

BOOST_FIXTURE_TEST_CASE(scans_follow_byte_order_within_one_table,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!put_all(*j, "t",
                         {{"b", "2"},
                          {"a", "1"},
                          {"ab", "3"},
                          {std::string{"a\0", 2}, "4"},
                          {"c", "5"}}));
  // Neighbouring tables whose names share the prefix "t".
  BOOST_REQUIRE(!put_all(*j, "t2", {{"a", "x"}}));
  BOOST_REQUIRE(!put_all(*j, "s", {{"z", "x"}}));
  BOOST_REQUIRE(!put_all(*j, std::string{"t\x01i"}, {{"a", "x"}}));
  std::string a0{"a\0", 2};
  BOOST_TEST(
      (scan_of(*j, "t", "", "") ==
       entries{{"a", "1"}, {a0, "4"}, {"ab", "3"}, {"b", "2"}, {"c", "5"}}));
  BOOST_TEST((scan_of(*j, "t", "ab", "c") == entries{{"ab", "3"}, {"b", "2"}}));
  BOOST_TEST((scan_of(*j, "t", "a", "", 2) == entries{{"a", "1"}, {a0, "4"}}));
  BOOST_TEST(scan_of(*j, "t", "d", "").empty());
  BOOST_TEST(
      (prefix_of(*j, "t", "a") == entries{{"a", "1"}, {a0, "4"}, {"ab", "3"}}));
  BOOST_TEST((prefix_of(*j, "t", "ab") == entries{{"ab", "3"}}));
  BOOST_TEST(count_of(*j, "t") == 5u);
  // The visitor stops the scan.
  size_t seen = 0;
  auto err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto res = ts::scan_in(
        txn, "t", "", "", ts::unlimited,
        [&](std::string_view, std::string_view) { return ++seen < 3; });
    if (!res) return res.error();
    BOOST_TEST(*res == 3u);
    auto names = ts::tables_in(txn);
    if (!names) return names.error();
    BOOST_TEST((*names == std::vector<std::string>{"s", "t", "t\x01i", "t2"}));
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
}

BOOST_FIXTURE_TEST_CASE(names_and_keys_are_validated,
                        mnemo::test::journal_fixture) {
  auto put = [&](std::string table, std::string key) {
    return j->write(
        [&](mp::write_txn& txn) { return ts::put_in(txn, table, key, "v"); });
  };
  auto code = [&](std::string table, std::string key) {
    return put(std::move(table), std::move(key)).code();
  };
  BOOST_TEST(code("", "k") == mp::errc::invalid_argument);
  BOOST_TEST(code(std::string{"a\0b", 3}, "k") == mp::errc::invalid_argument);
  BOOST_TEST(code(std::string(201, 't'), "k") == mp::errc::invalid_argument);
  BOOST_TEST(put(std::string(200, 't'), "k").message().empty());
  BOOST_TEST(ts::max_key_size("orders") == 511u - 7u);
  BOOST_TEST(ts::max_key_size(std::string(200, 't')) == 310u);
  BOOST_TEST(!put("orders", std::string(504, 'k')));
  auto err = put("orders", std::string(505, 'k'));
  BOOST_TEST(err.code() == mp::errc::invalid_argument);
  BOOST_TEST(err.message().find("'orders'") != std::string::npos);
  BOOST_TEST(err.message().find("504") != std::string::npos);
  auto read_err = j->read([](mp::read_txn& txn) -> mp::error {
    auto res = ts::get_in(txn, "", "k");
    return res ? mp::error{} : res.error();
  });
  BOOST_TEST(read_err.code() == mp::errc::invalid_argument);
  mp::table<std::string, int> bad{
      "has\x01"
      "byte"};
  BOOST_TEST(bad.validity().code() == mp::errc::invalid_argument);
  mp::table<std::string, int> good{"good"};
  BOOST_TEST(!good.validity());
  good.add_index<int>("", [](const int& v) { return std::optional<int>{v}; });
  BOOST_TEST(good.validity().code() == mp::errc::invalid_argument);
  auto res = j->read([&](mp::read_txn& txn) -> mp::error {
    auto r = good.count(txn);
    return r ? mp::error{} : r.error();
  });
  BOOST_TEST(res.code() == mp::errc::invalid_argument);
}

BOOST_FIXTURE_TEST_CASE(clear_removes_a_large_table_only,
                        mnemo::test::journal_fixture) {
  constexpr uint64_t n = 200000;
  std::string value(100, 'v');
  auto err = j->write([&](mp::write_txn& txn) -> mp::error {
    for (uint64_t i = 0; i < n; ++i)
      if (auto e = ts::put_in(txn, "big", mp::encode_key(i), value)) return e;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_REQUIRE(!put_all(*j, "bi", {{"k", "before"}}));
  BOOST_REQUIRE(!put_all(*j, "big2", {{"k", "after"}}));
  BOOST_TEST(count_of(*j, "big") == n);
  // A partial clear first, then the rest with the offset reset.
  uint64_t some = 0;
  uint64_t rest = 0;
  err = j->write([&](mp::write_txn& txn) -> mp::error {
    auto res = ts::clear_some_in(txn, "big", 1000);
    if (!res) return res.error();
    some = *res;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST(some == 1000u);
  BOOST_TEST(!get_of(*j, "big", mp::encode_key(uint64_t{999})));
  BOOST_TEST(get_of(*j, "big", mp::encode_key(uint64_t{1000})).has_value());
  err = j->write([&](mp::write_txn& txn) -> mp::error {
    auto res = ts::clear_in(txn, "big");
    if (!res) return res.error();
    rest = *res;
    return mp::offset_store::store_in(txn, "big-view", 0);
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST(rest == n - 1000);
  BOOST_TEST(count_of(*j, "big") == 0u);
  BOOST_TEST(get_of(*j, "bi", "k").value_or("-") == "before");
  BOOST_TEST(get_of(*j, "big2", "k").value_or("-") == "after");
  reopen();
  BOOST_TEST(count_of(*j, "big") == 0u);
  BOOST_TEST(count_of(*j, "big2") == 1u);
}

BOOST_FIXTURE_TEST_CASE(tables_survive_reopen, mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!put_all(*j, "t", {{"k1", "v1"}, {"k2", "v2"}}));
  reopen();
  BOOST_TEST((scan_of(*j, "t", "", "") == entries{{"k1", "v1"}, {"k2", "v2"}}));
  j.reset();
  mp::journal_config cfg;
  cfg.directory = dir.sub("data");
  cfg.read_only = true;
  auto ro = mp::journal::open(cfg);
  BOOST_REQUIRE_MESSAGE(ro, mnemo::test::why(ro));
  BOOST_TEST(get_of(**ro, "t", "k2").value_or("-") == "v2");
}

BOOST_AUTO_TEST_SUITE_END()
