#include "mnemo/persistence/offset_store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "test_support.hpp"

namespace mp = mnemo::persistence;

namespace {

using offset_list = std::vector<std::pair<std::string, uint64_t>>;

uint64_t load_of(mp::journal& j, std::string_view name) {
  auto res = j.offsets().load(name);
  BOOST_REQUIRE_MESSAGE(res, (res ? std::string{} : res.error().to_string()));
  return *res;
}

offset_list list_of(mp::journal& j) {
  auto res = j.offsets().list();
  BOOST_REQUIRE_MESSAGE(res, (res ? std::string{} : res.error().to_string()));
  return *res;
}

// A read-model row stored as a snapshot, written in the same transaction as
// the projection's offset.
mp::snapshot read_model_row(uint64_t sequence, const std::string& value) {
  mp::snapshot snap;
  snap.meta.stream_id = "balance-view";
  snap.meta.sequence = sequence;
  auto ev = mnemo::test::make_event("balance", value);
  snap.type = ev.type;
  snap.payload = ev.payload;
  return snap;
}

std::optional<uint64_t> read_model_sequence(mp::journal& j) {
  auto res =
      j.snapshots().load("balance-view", mp::snapshot_criteria::latest());
  BOOST_REQUIRE_MESSAGE(res, (res ? std::string{} : res.error().to_string()));
  if (!*res) return std::nullopt;
  return (*res)->meta.sequence;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(offset_store)

BOOST_FIXTURE_TEST_CASE(unknown_name_loads_as_zero,
                        mnemo::test::journal_fixture) {
  BOOST_TEST(load_of(*j, "never-stored") == 0u);
  BOOST_TEST(list_of(*j).empty());
}

BOOST_FIXTURE_TEST_CASE(store_load_and_overwrite,
                        mnemo::test::journal_fixture) {
  auto& offsets = j->offsets();
  BOOST_REQUIRE(!offsets.store("balances", 17));
  BOOST_TEST(load_of(*j, "balances") == 17u);
  BOOST_TEST(load_of(*j, "other") == 0u);
  BOOST_REQUIRE(!offsets.store("balances", 18));
  BOOST_TEST(load_of(*j, "balances") == 18u);
  // Offsets are plain values: moving back and to the extremes works too.
  BOOST_REQUIRE(!offsets.store("balances", 3));
  BOOST_TEST(load_of(*j, "balances") == 3u);
  auto max = std::numeric_limits<uint64_t>::max();
  BOOST_REQUIRE(!offsets.store("balances", max));
  BOOST_TEST(load_of(*j, "balances") == max);
  BOOST_TEST((list_of(*j) == offset_list{{"balances", max}}));
}

BOOST_FIXTURE_TEST_CASE(remove_makes_an_offset_read_zero,
                        mnemo::test::journal_fixture) {
  auto& offsets = j->offsets();
  BOOST_REQUIRE(!offsets.store("a", 5));
  BOOST_REQUIRE(!offsets.store("b", 6));
  BOOST_REQUIRE(!offsets.remove("a"));
  BOOST_TEST(load_of(*j, "a") == 0u);
  BOOST_TEST(load_of(*j, "b") == 6u);
  BOOST_TEST((list_of(*j) == offset_list{{"b", 6}}));
  // A removed offset can be stored again.
  BOOST_REQUIRE(!offsets.store("a", 1));
  BOOST_TEST(load_of(*j, "a") == 1u);
}

BOOST_FIXTURE_TEST_CASE(list_is_in_name_order, mnemo::test::journal_fixture) {
  auto& offsets = j->offsets();
  offset_list stored = {{"orders", 9},    {"Audit", 1},   {"balances", 4},
                        {"orders.v2", 2}, {"a", 7},       {"order", 3},
                        {"zeta", 0},      {"balance", 11}};
  for (auto& [name, pos] : stored) BOOST_REQUIRE(!offsets.store(name, pos));
  auto expected = stored;
  std::sort(expected.begin(), expected.end());
  auto listed = list_of(*j);
  BOOST_REQUIRE(listed.size() == expected.size());
  for (size_t i = 0; i < listed.size(); ++i) {
    BOOST_TEST(listed[i].first == expected[i].first);
    BOOST_TEST(listed[i].second == expected[i].second);
  }
}

BOOST_FIXTURE_TEST_CASE(offsets_survive_reopen, mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->offsets().store("balances", 42));
  BOOST_REQUIRE(!j->offsets().store("orders", 7));
  BOOST_REQUIRE(!j->offsets().remove("orders"));
  reopen();
  BOOST_TEST(load_of(*j, "balances") == 42u);
  BOOST_TEST(load_of(*j, "orders") == 0u);
  BOOST_TEST((list_of(*j) == offset_list{{"balances", 42}}));
}

BOOST_FIXTURE_TEST_CASE(invalid_names_are_invalid_argument,
                        mnemo::test::journal_fixture) {
  auto& offsets = j->offsets();
  std::vector<std::string> bad = {"", std::string("a\0b", 3),
                                  std::string(1, '\0'), std::string(401, 'n')};
  for (auto& name : bad) {
    BOOST_TEST_CONTEXT("name of " << name.size() << " bytes") {
      auto store_err = offsets.store(name, 1);
      BOOST_TEST((store_err.code() == mp::errc::invalid_argument));
      BOOST_TEST(!store_err.message().empty());
      auto loaded = offsets.load(name);
      BOOST_REQUIRE(!loaded);
      BOOST_TEST((loaded.error().code() == mp::errc::invalid_argument));
      BOOST_TEST((offsets.remove(name).code() == mp::errc::invalid_argument));
      auto in_write = j->write([&](mp::write_txn& txn) {
        return mp::offset_store::store_in(txn, name, 1);
      });
      BOOST_TEST((in_write.code() == mp::errc::invalid_argument));
      auto in_read = j->read([&](mp::read_txn& txn) -> mp::error {
        auto res = mp::offset_store::load_in(txn, name);
        return res ? mp::error{} : res.error();
      });
      BOOST_TEST((in_read.code() == mp::errc::invalid_argument));
    }
  }
  BOOST_TEST(list_of(*j).empty());
  // Exactly 400 bytes is still fine.
  std::string longest(400, 'n');
  BOOST_REQUIRE(!offsets.store(longest, 5));
  BOOST_TEST(load_of(*j, longest) == 5u);
  BOOST_TEST(!j->failure());
}

BOOST_FIXTURE_TEST_CASE(failed_write_function_rolls_back_offset_and_update,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->write([](mp::write_txn& txn) -> mp::error {
    if (auto err = mp::snapshot_store::save_in(txn, read_model_row(10, "x")))
      return err;
    return mp::offset_store::store_in(txn, "balances", 10);
  }));
  // The handler updates the read model and the offset, then fails.
  auto err = j->write([](mp::write_txn& txn) -> mp::error {
    if (auto err = mp::snapshot_store::save_in(txn, read_model_row(20, "y")))
      return err;
    if (auto err = mp::offset_store::store_in(txn, "balances", 20)) return err;
    if (auto err = mp::offset_store::store_in(txn, "fresh", 20)) return err;
    return mnemo::test::simulated_failure();
  });
  BOOST_TEST((err.code() == mp::errc::invalid_argument));
  BOOST_TEST(err.message() == "simulated handler failure");
  BOOST_TEST(load_of(*j, "balances") == 10u);
  BOOST_TEST(load_of(*j, "fresh") == 0u);
  BOOST_TEST((read_model_sequence(*j) == std::optional<uint64_t>{10}));
  // The rollback is not sticky: the journal keeps working.
  BOOST_TEST(!j->failure());
  BOOST_REQUIRE(!j->offsets().store("balances", 11));
  BOOST_TEST(load_of(*j, "balances") == 11u);
  reopen();
  BOOST_TEST(load_of(*j, "balances") == 11u);
  BOOST_TEST((read_model_sequence(*j) == std::optional<uint64_t>{10}));
}

BOOST_FIXTURE_TEST_CASE(failed_write_function_leaves_other_requests_alone,
                        mnemo::test::journal_fixture) {
  // Queue an append, a failing handler and a good handler back to back so
  // they likely share a group commit; only the failing one may vanish.
  std::promise<mp::expected<mp::append_result>> appended;
  std::promise<mp::error> failed;
  std::promise<mp::error> stored;
  j->append("orders-1", {mnemo::test::make_event("placed", "o1")},
            mp::expected_version::no_stream(),
            [&](mp::expected<mp::append_result> res) {
              appended.set_value(std::move(res));
            });
  j->write(
      [](mp::write_txn& txn) -> mp::error {
        if (auto err = mp::offset_store::store_in(txn, "orders-view", 1))
          return err;
        return mnemo::test::simulated_failure();
      },
      [&](mp::error err) { failed.set_value(std::move(err)); });
  j->write(
      [](mp::write_txn& txn) {
        return mp::offset_store::store_in(txn, "audit-view", 1);
      },
      [&](mp::error err) { stored.set_value(std::move(err)); });
  auto append_res = appended.get_future().get();
  BOOST_REQUIRE_MESSAGE(
      append_res,
      (append_res ? std::string{} : append_res.error().to_string()));
  BOOST_TEST(append_res->events.at(0).position == 1u);
  BOOST_TEST((failed.get_future().get().code() == mp::errc::invalid_argument));
  BOOST_TEST(!stored.get_future().get());
  BOOST_TEST(load_of(*j, "orders-view") == 0u);
  BOOST_TEST(load_of(*j, "audit-view") == 1u);
  BOOST_TEST(j->highest_sequence("orders-1").value() == 1u);
}

BOOST_FIXTURE_TEST_CASE(offsets_of_one_write_function_land_together,
                        mnemo::test::journal_fixture) {
  auto err = j->write([](mp::write_txn& txn) -> mp::error {
    if (auto err = mp::snapshot_store::save_in(txn, read_model_row(7, "v")))
      return err;
    if (auto err = mp::offset_store::store_in(txn, "balances", 7)) return err;
    if (auto err = mp::offset_store::store_in(txn, "statements", 8)) return err;
    // The last store of a name in one transaction wins.
    return mp::offset_store::store_in(txn, "statements", 9);
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST(load_of(*j, "balances") == 7u);
  BOOST_TEST(load_of(*j, "statements") == 9u);
  BOOST_TEST((read_model_sequence(*j) == std::optional<uint64_t>{7}));
  BOOST_TEST((list_of(*j) == offset_list{{"balances", 7}, {"statements", 9}}));
}

BOOST_FIXTURE_TEST_CASE(load_in_sees_a_consistent_snapshot,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->write([](mp::write_txn& txn) -> mp::error {
    if (auto err = mp::offset_store::store_in(txn, "a", 1)) return err;
    return mp::offset_store::store_in(txn, "b", 1);
  }));
  std::vector<uint64_t> seen;
  // Outlives the read, so that a write stuck behind it can still finish.
  std::future<mp::error> moved;
  auto err = j->read([&](mp::read_txn& txn) -> mp::error {
    auto load = [&](std::string_view name) -> mp::error {
      auto res = mp::offset_store::load_in(txn, name);
      if (!res) return res.error();
      seen.push_back(*res);
      return {};
    };
    if (auto err = load("a")) return err;
    // Another thread moves both offsets and adds a third one while this
    // read is open; the read must not see any of it.
    moved = std::async(std::launch::async, [&] {
      return j->write([](mp::write_txn& wtxn) -> mp::error {
        for (auto name : {"a", "b", "c"})
          if (auto err = mp::offset_store::store_in(wtxn, name, 2)) return err;
        return {};
      });
    });
    if (moved.wait_for(std::chrono::seconds{30}) != std::future_status::ready)
      return mp::error{mp::errc::storage_error,
                       "write blocked by an open read transaction"};
    if (auto err = moved.get()) return err;
    for (auto name : {"a", "b", "c"})
      if (auto err = load(name)) return err;
    return {};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST((seen == std::vector<uint64_t>{1, 1, 1, 0}));
  // A new read sees the committed write.
  BOOST_TEST(load_of(*j, "a") == 2u);
  BOOST_TEST(load_of(*j, "b") == 2u);
  BOOST_TEST(load_of(*j, "c") == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
