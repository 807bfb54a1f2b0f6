#include "mnemo/persistence/dead_letter_store.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <lmdb.h>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "test_support.hpp"

namespace mp = mnemo::persistence;
using mnemo::test::with_raw_db;

namespace {

mp::dead_letter letter(std::string projection, uint64_t position) {
  mp::dead_letter x;
  x.projection = std::move(projection);
  x.position = position;
  x.stream_id = "account-" + std::to_string(position);
  x.sequence = position * 2;
  x.event_type = "deposited";
  x.error = "decode_failed: amount is negative";
  x.attempts = 3;
  x.parked_at_ms = 1700000000000 + static_cast<int64_t>(position);
  return x;
}

std::vector<uint64_t> positions(mp::journal& j, std::string_view projection,
                                uint64_t from = 0, size_t limit = 100) {
  auto res = j.dead_letters().list(projection, from, limit);
  BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
  std::vector<uint64_t> result;
  for (auto& x : *res) result.push_back(x.position);
  return result;
}

uint64_t count_of(mp::journal& j, std::string_view projection) {
  auto res = j.dead_letters().count(projection);
  BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
  return *res;
}

std::unique_ptr<mp::journal> open_read_only(const std::string& dir) {
  mp::journal_config cfg;
  cfg.directory = dir;
  cfg.read_only = true;
  auto j = mp::journal::open(cfg);
  BOOST_REQUIRE_MESSAGE(j, mnemo::test::why(j));
  return std::move(j).value();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dead_letter_store)

BOOST_FIXTURE_TEST_CASE(park_get_remove_round_trip,
                        mnemo::test::journal_fixture) {
  auto& store = j->dead_letters();
  auto original = letter("balances", 42);
  BOOST_REQUIRE(!store.park(original));
  auto got = store.get("balances", 42);
  BOOST_REQUIRE_MESSAGE(got, mnemo::test::why(got));
  BOOST_REQUIRE(got->has_value());
  auto& x = **got;
  BOOST_TEST(x.projection == "balances");
  BOOST_TEST(x.position == 42u);
  BOOST_TEST(x.stream_id == original.stream_id);
  BOOST_TEST(x.sequence == 84u);
  BOOST_TEST(x.event_type == "deposited");
  BOOST_TEST(x.error == original.error);
  BOOST_TEST(x.attempts == 3u);
  BOOST_TEST(x.parked_at_ms == original.parked_at_ms);
  BOOST_TEST(!store.get("balances", 41)->has_value());
  BOOST_TEST(!store.get("other", 42)->has_value());
  // Parking again at the same position replaces the record.
  original.attempts = 4;
  original.parked_at_ms = 0;
  auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  BOOST_REQUIRE(!store.park(original));
  BOOST_TEST(count_of(*j, "balances") == 1u);
  auto replaced = store.get("balances", 42);
  BOOST_REQUIRE(replaced && replaced->has_value());
  BOOST_TEST((*replaced)->attempts == 4u);
  BOOST_TEST((*replaced)->parked_at_ms >= before);
  auto removed = store.remove("balances", 42);
  BOOST_REQUIRE_MESSAGE(removed, mnemo::test::why(removed));
  BOOST_TEST(*removed);
  auto again = store.remove("balances", 42);
  BOOST_REQUIRE_MESSAGE(again, mnemo::test::why(again));
  BOOST_TEST(!*again);
  BOOST_TEST(count_of(*j, "balances") == 0u);
}

BOOST_FIXTURE_TEST_CASE(list_is_per_projection_in_position_order,
                        mnemo::test::journal_fixture) {
  auto& store = j->dead_letters();
  // Names that share a prefix, and positions whose bytes would sort wrong
  // as text (256 > 255 > 2).
  for (uint64_t pos : std::vector<uint64_t>{256, 2, 255, uint64_t{1} << 40, 1})
    BOOST_REQUIRE(!store.park(letter("p", pos)));
  BOOST_REQUIRE(!store.park(letter("p2", 3)));
  BOOST_REQUIRE(!store.park(letter("o", 7)));
  BOOST_TEST((positions(*j, "p") ==
              std::vector<uint64_t>{1, 2, 255, 256, uint64_t{1} << 40}));
  BOOST_TEST((positions(*j, "p", 3) ==
              std::vector<uint64_t>{255, 256, uint64_t{1} << 40}));
  BOOST_TEST((positions(*j, "p", 2, 2) == std::vector<uint64_t>{2, 255}));
  BOOST_TEST(positions(*j, "p", 0, 0).empty());
  BOOST_TEST((positions(*j, "p2") == std::vector<uint64_t>{3}));
  BOOST_TEST(positions(*j, "q").empty());
  BOOST_TEST(count_of(*j, "p") == 5u);
  BOOST_TEST(count_of(*j, "o") == 1u);
  auto list = store.list("p", 256, 1);
  BOOST_REQUIRE_MESSAGE(list, mnemo::test::why(list));
  BOOST_TEST(list->at(0).stream_id == "account-256");
  BOOST_TEST(list->at(0).projection == "p");
}

BOOST_FIXTURE_TEST_CASE(parking_commits_with_the_offset_or_not_at_all,
                        mnemo::test::journal_fixture) {
  auto skip = [&](uint64_t pos, bool fail) {
    return j->write([=](mp::write_txn& txn) -> mp::error {
      if (auto err = mp::dead_letter_store::park_in(txn, letter("proj", pos)))
        return err;
      if (auto err = mp::offset_store::store_in(txn, "proj", pos)) return err;
      if (fail) return mp::error{mp::errc::storage_error, "simulated"};
      // The transaction sees its own dead letter.
      auto n = mp::dead_letter_store::count_in(txn, "proj");
      if (!n) return n.error();
      return *n == pos ? mp::error{}
                       : mp::error{mp::errc::storage_error, "count mismatch"};
    });
  };
  BOOST_REQUIRE(!skip(1, false));
  BOOST_TEST(skip(2, true).code() == mp::errc::storage_error);
  BOOST_TEST((positions(*j, "proj") == std::vector<uint64_t>{1}));
  BOOST_TEST(*j->offsets().load("proj") == 1u);
  BOOST_REQUIRE(!skip(2, false));
  BOOST_TEST((positions(*j, "proj") == std::vector<uint64_t>{1, 2}));
  // A retry that succeeds removes the letter with its own effect.
  auto err = j->write([](mp::write_txn& txn) -> mp::error {
    auto res = mp::dead_letter_store::remove_in(txn, "proj", 1);
    if (!res) return res.error();
    auto all = mp::dead_letter_store::list_in(txn, "proj", 0, 10);
    if (!all) return all.error();
    return all->size() == 1 ? mp::error{}
                            : mp::error{mp::errc::storage_error, "not seen"};
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_TEST((positions(*j, "proj") == std::vector<uint64_t>{2}));
}

BOOST_FIXTURE_TEST_CASE(names_are_validated, mnemo::test::journal_fixture) {
  auto& store = j->dead_letters();
  BOOST_TEST(store.park(letter("", 1)).code() == mp::errc::invalid_argument);
  BOOST_TEST(store.park(letter(std::string{"a\0b", 3}, 1)).code() ==
             mp::errc::invalid_argument);
  BOOST_TEST(store.park(letter(std::string(401, 'p'), 1)).code() ==
             mp::errc::invalid_argument);
  BOOST_TEST(!store.park(letter(std::string(400, 'p'), 1)));
  auto res = store.list("", 0, 10);
  BOOST_TEST((res ? mp::errc::none : res.error().code()) ==
             mp::errc::invalid_argument);
}

BOOST_FIXTURE_TEST_CASE(dead_letters_survive_reopen,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 5)));
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 6)));
  reopen();
  BOOST_TEST((positions(*j, "p") == std::vector<uint64_t>{5, 6}));
  j.reset();
  auto ro = open_read_only(dir.sub("data"));
  BOOST_TEST((positions(*ro, "p") == std::vector<uint64_t>{5, 6}));
  auto got = ro->dead_letters().get("p", 6);
  BOOST_REQUIRE_MESSAGE(got, mnemo::test::why(got));
  BOOST_TEST((*got)->stream_id == "account-6");
}

BOOST_FIXTURE_TEST_CASE(corrupt_record_is_reported,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 5)));
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 6)));
  j.reset();
  with_raw_db(dir.sub("data"), "mnemo.dead_letters",
              [](MDB_txn* txn, MDB_dbi dbi) {
                std::string key{"p\0\0\0\0\0\0\0\0\x06", 10};
                MDB_val k{key.size(), key.data()};
                char bad[] = "\x01\xc1";
                MDB_val v{2, bad};
                BOOST_REQUIRE_EQUAL(mdb_put(txn, dbi, &k, &v, 0), 0);
              });
  j = mnemo::test::open_journal(dir.sub("data"));
  auto got = j->dead_letters().get("p", 6);
  BOOST_REQUIRE(!got);
  BOOST_TEST(got.error().code() == mp::errc::corrupt_record);
  BOOST_TEST(got.error().message().find("'p' at position 6") !=
             std::string::npos);
  auto list = j->dead_letters().list("p", 0, 10);
  BOOST_TEST(!list);
  // The damaged record can be removed; the others stay readable.
  BOOST_TEST(*j->dead_letters().remove("p", 6));
  BOOST_TEST((positions(*j, "p") == std::vector<uint64_t>{5}));
}

// A directory written before mnemo.tables and mnemo.dead_letters existed.
BOOST_FIXTURE_TEST_CASE(environment_without_the_new_databases_opens,
                        mnemo::test::journal_fixture) {
  BOOST_REQUIRE(!j->offsets().store("p", 3));
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 5)));
  j.reset();
  auto data = dir.sub("data");
  for (auto name : {"mnemo.dead_letters", "mnemo.tables"})
    with_raw_db(data, name, [](MDB_txn* txn, MDB_dbi dbi) {
      BOOST_REQUIRE_EQUAL(mdb_drop(txn, dbi, 1), 0);
    });
  {
    // Read-only: the missing databases read as empty.
    auto ro = open_read_only(data);
    BOOST_TEST(positions(*ro, "p").empty());
    BOOST_TEST(count_of(*ro, "p") == 0u);
    BOOST_TEST(!ro->dead_letters().get("p", 5)->has_value());
    BOOST_TEST(*ro->offsets().load("p") == 3u);
    auto err = ro->read([](mp::read_txn& txn) -> mp::error {
      auto names = mp::table_store::tables_in(txn);
      if (!names) return names.error();
      auto value = mp::table_store::get_in(txn, "t", "k");
      if (!value) return value.error();
      BOOST_TEST(names->empty());
      BOOST_TEST(!value->has_value());
      return {};
    });
    BOOST_TEST(!err);
  }
  // Writable: they are created, and work.
  j = mnemo::test::open_journal(data);
  BOOST_TEST(positions(*j, "p").empty());
  BOOST_REQUIRE(!j->dead_letters().park(letter("p", 7)));
  auto err = j->write([](mp::write_txn& txn) {
    return mp::table_store::put_in(txn, "t", "k", "v");
  });
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  reopen();
  BOOST_TEST((positions(*j, "p") == std::vector<uint64_t>{7}));
  BOOST_TEST(*j->offsets().load("p") == 3u);
}

BOOST_AUTO_TEST_SUITE_END()
