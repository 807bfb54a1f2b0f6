// Dense rewrites of the stream heads and the read-model tables: built by
// random inserts, their pages are about two thirds full; a group commit
// rewrites them densely once they have grown by a quarter, so that later
// commits that update their rows write fewer pages. Contents never change.

#include <algorithm>
#include <random>

#include <lmdb.h>

#include "mnemo/persistence/table_store.hpp"
#include "test_support.hpp"

using namespace mnemo;
using persistence::expected_version;
using persistence::table_store;

namespace {

struct db_stat {
  size_t entries = 0;
  size_t leaf_pages = 0;
};

// Reads the page statistics of database `name` with plain LMDB; the
// journal on `dir` must be closed.
db_stat stat_of(const std::string& dir, const char* name) {
  MDB_env* env = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  BOOST_REQUIRE_EQUAL(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644), 0);
  MDB_txn* txn = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), 0);
  MDB_dbi dbi = 0;
  BOOST_REQUIRE_EQUAL(mdb_dbi_open(txn, name, 0, &dbi), 0);
  MDB_stat ms;
  BOOST_REQUIRE_EQUAL(mdb_stat(txn, dbi, &ms), 0);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return {ms.ms_entries, ms.ms_leaf_pages};
}

// Leaf pages that entries of these key and value sizes fill when every
// page is full: LMDB's node header and offset slot, keys and values
// padded to even sizes, 16-byte page headers.
size_t dense_pages(const std::vector<std::string>& keys, size_t value_size) {
  size_t bytes = 0;
  for (auto& k : keys) bytes += 10 + ((k.size() + value_size + 1) & ~size_t{1});
  return bytes / (4096 - 16) + 1;
}

persistence::new_event event_of(const std::string& type) {
  persistence::new_event ev;
  ev.type = type;
  ev.payload = {0x80};  // {}
  return ev;
}

std::vector<std::string> shuffled_names(const std::string& prefix, size_t n,
                                        uint64_t seed) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back(prefix + std::to_string(i));
  std::shuffle(names.begin(), names.end(), std::mt19937_64{seed});
  return names;
}

// Inserts `keys` in order, one commit each, with `insert`, until a commit
// has compacted with at least 1000 of them; returns how many it inserted.
template <class F>
size_t insert_until_compacted(persistence::journal& j,
                              const std::vector<std::string>& keys, F insert) {
  size_t inserted = 0;
  uint64_t compactions = 0;
  for (auto& key : keys) {
    insert(key);
    ++inserted;
    auto now = j.stats().compactions;
    if (now > compactions) {
      compactions = now;
      if (inserted >= 1000) break;
    }
  }
  return inserted;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(compaction)

BOOST_AUTO_TEST_CASE(stream_heads_become_dense_and_stay_so_under_updates) {
  test::journal_fixture f;
  auto names = shuffled_names("stream-", 4000, 7);
  // New streams in random order, until a commit has compacted the heads
  // with at least 1000 of them.
  auto created =
      insert_until_compacted(*f.j, names, [&](const std::string& name) {
        auto res = f.j->append(name, {event_of("created")},
                               expected_version::no_stream());
        BOOST_REQUIRE_MESSAGE(res, test::why(res));
      });
  BOOST_REQUIRE_GE(created, 1000u);
  // At 256 and at least once more.
  BOOST_REQUIRE_GE(f.j->stats().compactions, 2u);
  names.resize(created);
  f.j.reset();
  auto dense = stat_of(f.dir.sub("data"), "mnemo.streams");
  BOOST_CHECK_EQUAL(dense.entries, created);
  BOOST_CHECK_LE(dense.leaf_pages, dense_pages(names, 24));
  // Updates add no keys and keep the sizes: no page splits, and no
  // further rewrites.
  f.reopen();
  std::shuffle(names.begin(), names.end(), std::mt19937_64{8});
  for (auto& name : names) {
    auto res =
        f.j->append(name, {event_of("updated")}, expected_version::exact(1));
    BOOST_REQUIRE_MESSAGE(res, test::why(res));
  }
  BOOST_CHECK_EQUAL(f.j->stats().compactions, 0u);  // counted since open
  f.j.reset();
  auto after = stat_of(f.dir.sub("data"), "mnemo.streams");
  BOOST_CHECK_EQUAL(after.leaf_pages, dense.leaf_pages);
  // Every head and every event is where it was.
  f.reopen();
  auto listed = f.j->list_streams("", 10000);
  BOOST_REQUIRE(listed);
  BOOST_CHECK_EQUAL(listed->size(), created);
  for (auto& head : *listed) {
    BOOST_CHECK_EQUAL(head.highest_sequence, 2u);
    BOOST_CHECK_EQUAL(head.deleted_to, 0u);
  }
  for (size_t i = 0; i < names.size(); i += 97) {
    auto events = f.j->read_stream(names[i], 1, UINT64_MAX, 10);
    BOOST_REQUIRE_MESSAGE(events, test::why(events));
    BOOST_REQUIRE_EQUAL(events->size(), 2u);
    BOOST_CHECK_EQUAL((*events)[0].type, "created");
    BOOST_CHECK_EQUAL((*events)[1].type, "updated");
  }
  auto res =
      f.j->append(names[0], {event_of("again")}, expected_version::exact(2));
  BOOST_REQUIRE_MESSAGE(res, test::why(res));
  BOOST_CHECK_EQUAL(res->stream_version, 3u);
}

BOOST_AUTO_TEST_CASE(read_model_rows_become_dense_with_their_values_intact) {
  test::journal_fixture f;
  auto keys = shuffled_names("row-", 3000, 11);
  auto value_of = [](const std::string& key) {
    return "value of " + key + std::string(20 - key.size() % 7, '.');
  };
  auto written =
      insert_until_compacted(*f.j, keys, [&](const std::string& key) {
        auto err = f.j->write([&](persistence::write_txn& txn) {
          return table_store::put_in(txn, "rows", key, value_of(key));
        });
        BOOST_REQUIRE_MESSAGE(!err, err.to_string());
      });
  BOOST_REQUIRE_GE(written, 1000u);
  keys.resize(written);
  // Stored keys are "rows" NUL key; the values vary in size.
  std::vector<std::string> stored;
  for (auto& k : keys)
    stored.push_back(std::string{"rows"} + '\0' + k + value_of(k));
  f.j.reset();
  auto st = stat_of(f.dir.sub("data"), "mnemo.tables");
  BOOST_CHECK_EQUAL(st.entries, written);
  BOOST_CHECK_LE(st.leaf_pages, dense_pages(stored, 0));
  f.reopen();
  auto err = f.j->read([&](persistence::read_txn& txn) {
    for (auto& key : keys) {
      auto value = table_store::get_in(txn, "rows", key);
      if (!value) return value.error();
      BOOST_REQUIRE(value->has_value());
      BOOST_CHECK_EQUAL(**value, value_of(key));
    }
    return persistence::error{};
  });
  BOOST_CHECK_MESSAGE(!err, err.to_string());
}

BOOST_AUTO_TEST_SUITE_END()
