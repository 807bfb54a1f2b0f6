// The etcd client against a real etcd 3.4 (Debian's etcd-server) started
// on loopback: keys, compare-and-swap on revisions, leases (keepalive,
// revoke, expiry), the election recipe with increasing epochs, and clear
// errors when etcd cannot be reached.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>
#include <caf/sec.hpp>

#include "../support/etcd_server.hpp"
#include "../support/free_ports.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/coordination/etcd_client.hpp"
#include "mnemo/runtime/error.hpp"

using namespace mnemo;
using namespace mnemo::runtime::coordination;
using namespace std::chrono_literals;

using mnemo::test::etcd_server;

BOOST_AUTO_TEST_SUITE(etcd_coordination)

BOOST_AUTO_TEST_CASE(keys_and_compare_and_swap_on_revisions) {
  etcd_server etcd;
  auto c = etcd.client();
  BOOST_CHECK(c->get("/m/a").value() == std::nullopt);
  auto rev = c->put("/m/a", std::string{"one\0two", 7});
  BOOST_REQUIRE(rev);
  auto a = c->get("/m/a").value();
  BOOST_REQUIRE(a);
  BOOST_CHECK_EQUAL(a->value, (std::string{"one\0two", 7}));  // bytes intact
  BOOST_CHECK_EQUAL(a->mod_revision, *rev);
  BOOST_CHECK_EQUAL(a->version, 1);
  // create: only once; the second finds the first.
  auto first = c->create("/m/b", "x").value();
  BOOST_CHECK(first.succeeded);
  BOOST_CHECK_EQUAL(first.kv.value, "x");
  auto second = c->create("/m/b", "y").value();
  BOOST_CHECK(!second.succeeded);
  BOOST_CHECK_EQUAL(second.kv.value, "x");
  BOOST_CHECK_EQUAL(second.kv.create_revision, first.kv.create_revision);
  // replace: only from the revision the caller saw.
  auto swapped = c->replace("/m/b", "z", first.kv.mod_revision).value();
  BOOST_CHECK(swapped.succeeded);
  BOOST_CHECK_EQUAL(swapped.kv.value, "z");
  BOOST_CHECK_GT(swapped.kv.mod_revision, first.kv.mod_revision);
  auto stale = c->replace("/m/b", "w", first.kv.mod_revision).value();
  BOOST_CHECK(!stale.succeeded);
  BOOST_CHECK_EQUAL(stale.kv.value, "z");
  // Prefixes in creation order, and up to a create revision.
  auto all = c->get_prefix("/m/").value();
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  BOOST_CHECK_EQUAL(all[0].key, "/m/a");
  BOOST_CHECK_EQUAL(all[1].key, "/m/b");
  BOOST_CHECK_EQUAL(c->get_prefix("/m/", 1).value().size(), 1u);
  BOOST_CHECK_EQUAL(
      c->get_prefix("/m/", 0, first.kv.create_revision - 1).value().size(), 1u);
  // erase: conditional on the create revision.
  BOOST_CHECK(!c->erase("/m/b", first.kv.create_revision + 100).value());
  BOOST_CHECK(c->erase("/m/b", first.kv.create_revision).value());
  BOOST_CHECK(c->get("/m/b").value() == std::nullopt);
  BOOST_CHECK(!c->erase("/m/b").value());
}

// What a change of a shard's replica set will need (docs/replica-set-
// changes.md): several comparisons, and a delete of a prefix with puts that
// commit together or not at all.
BOOST_AUTO_TEST_CASE(transactions_compare_several_keys_and_write_all_or_nothing) {
  using co = etcd_compare;
  using op = etcd_op;
  etcd_server etcd;
  auto c = etcd.client();
  auto voters = c->put("/s/3/voters", "n1,n2,n3").value();
  BOOST_REQUIRE(c->put("/s/3/established", std::to_string(voters)));
  BOOST_REQUIRE(c->put("/s/3/candidates/a", "n1"));
  BOOST_REQUIRE(c->put("/s/3/candidates/b", "n2"));
  BOOST_REQUIRE(c->put("/s/30/candidates/c", "n3"));  // another shard
  auto change = [&](int64_t seen) {
    return c->txn(
        {co::changed_at("/s/3/voters", seen),
         co::holds("/s/3/established", std::to_string(seen)),
         co::absent("/s/3/lock")},
        {op::put("/s/3/voters", "n1,n2,n3,n4"),
         op::erase_prefix("/s/3/candidates/"), op::get_prefix("/s/3/")},
        {op::get("/s/3/voters"), op::get_prefix("/s/3/candidates/")});
  };
  // One comparison fails (a stale revision): nothing is written, and the
  // failure branch reads what is there.
  auto stale = change(voters - 1);
  BOOST_REQUIRE_MESSAGE(stale, (stale ? "" : runtime::describe(stale.error())));
  BOOST_CHECK(!stale->succeeded);
  BOOST_REQUIRE_EQUAL(stale->read.size(), 2u);
  BOOST_REQUIRE_EQUAL(stale->read[0].size(), 1u);
  BOOST_CHECK_EQUAL(stale->read[0][0].value, "n1,n2,n3");
  BOOST_CHECK_EQUAL(stale->read[1].size(), 2u);
  BOOST_CHECK_EQUAL(c->get_prefix("/s/3/candidates/").value().size(), 2u);
  // Another one fails (a key that must be absent exists): the same.
  BOOST_REQUIRE(c->put("/s/3/lock", "x"));
  BOOST_CHECK(!change(voters).value().succeeded);
  BOOST_CHECK_EQUAL(c->get("/s/3/voters").value()->value, "n1,n2,n3");
  BOOST_CHECK(c->erase("/s/3/lock").value());
  // All hold: the put and the delete of the prefix land at one revision;
  // the other shard's candidate, whose key shares the prefix's first
  // characters but not the slash, stays.
  auto done = change(voters).value();
  BOOST_CHECK(done.succeeded);
  BOOST_CHECK_EQUAL(done.deleted.at(1), 2);
  auto after = done.read.at(2);
  BOOST_REQUIRE_EQUAL(after.size(), 2u);  // voters and established
  for (auto& kv : after)
    if (kv.key == "/s/3/voters") {
      BOOST_CHECK_EQUAL(kv.value, "n1,n2,n3,n4");
      BOOST_CHECK_EQUAL(kv.mod_revision, done.revision);
    }
  BOOST_CHECK(c->get_prefix("/s/3/candidates/").value().empty());
  BOOST_CHECK_EQUAL(c->get_prefix("/s/30/").value().size(), 1u);
  // Repeated with the revision it saw before: refused.
  BOOST_CHECK(!change(voters).value().succeeded);
  // Version and other relations.
  BOOST_CHECK(c->txn({{"/s/3/voters", co::field::version, co::relation::equal,
                       2, {}}},
                     {})
                  .value()
                  .succeeded);
  BOOST_CHECK(c->txn({{"/s/3/voters", co::field::mod_revision,
                       co::relation::greater, voters, {}}},
                     {})
                  .value()
                  .succeeded);
  BOOST_CHECK(!c->txn({{"/s/3/voters", co::field::mod_revision,
                        co::relation::less, voters, {}}},
                      {})
                   .value()
                   .succeeded);
  // A transaction etcd refuses (one key written twice): a clear error, and
  // nothing written.
  auto twice = c->txn({}, {op::put("/s/3/x", "1"), op::put("/s/3/x", "2")});
  BOOST_REQUIRE(!twice);
  BOOST_CHECK(runtime::is(twice.error(), runtime::errc::invalid_argument));
  BOOST_CHECK_MESSAGE(
      runtime::describe(twice.error()).find("duplicate key") !=
          std::string::npos,
      runtime::describe(twice.error()));
  BOOST_CHECK(c->get("/s/3/x").value() == std::nullopt);
}

BOOST_AUTO_TEST_CASE(leases_keep_keys_until_revoked_or_expired) {
  etcd_server etcd;
  auto c = etcd.client();
  auto lease = c->grant(2s).value();
  BOOST_CHECK_NE(lease.id, 0);
  BOOST_CHECK_GE(lease.ttl.count(), 2);
  BOOST_REQUIRE(c->put("/l/k", "v", lease.id));
  BOOST_CHECK_EQUAL(c->get("/l/k").value()->lease, lease.id);
  // The shard coordinator reads the candidates again only when the
  // revision moved: keepalives and reads leave it, writes raise it.
  auto rev = c->revision("/l/").value();
  BOOST_CHECK_EQUAL(rev, c->get("/l/k").value()->mod_revision);
  // Kept alive past its TTL: the key stays.
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(700ms);
    auto ttl = c->keep_alive(lease.id);
    BOOST_REQUIRE_MESSAGE(ttl, (ttl ? "" : runtime::describe(ttl.error())));
    BOOST_CHECK_GE(ttl->count(), 1);
  }
  BOOST_CHECK(c->get("/l/k").value());
  BOOST_CHECK_EQUAL(c->revision("/l/").value(), rev);
  BOOST_CHECK_GT(c->put("/other", "x").value(), rev);
  rev = c->revision("/l/").value();
  // Revoked: the key goes, and a keepalive says the lease is gone.
  BOOST_REQUIRE(!c->revoke(lease.id));
  BOOST_CHECK(c->get("/l/k").value() == std::nullopt);
  auto gone = c->keep_alive(lease.id);
  BOOST_REQUIRE(!gone);
  BOOST_CHECK(runtime::is(gone.error(), runtime::errc::not_found));
  BOOST_CHECK_GT(c->revision("/l/").value(), rev);
  // Left alone, a lease expires with its keys, which raises the revision.
  auto brief = c->grant(2s).value();
  BOOST_REQUIRE(c->put("/l/e", "v", brief.id));
  rev = c->revision("/l/").value();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (c->get("/l/e").value() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  BOOST_CHECK(c->get("/l/e").value() == std::nullopt);
  BOOST_CHECK_GT(c->revision("/l/").value(), rev);
  BOOST_CHECK(!c->keep_alive(brief.id));
}

BOOST_AUTO_TEST_CASE(an_election_hands_over_with_a_greater_epoch) {
  etcd_server etcd;
  auto a = etcd.client();
  auto b = etcd.client();
  auto la = a->grant(5s).value();
  auto lb = b->grant(5s).value();
  auto term_a = campaign(*a, "/shard/7", la.id, "n1", 2s);
  BOOST_REQUIRE_MESSAGE(term_a, (term_a ? "" : runtime::describe(term_a.error())));
  BOOST_CHECK_EQUAL(leader(*b, "/shard/7").value()->value, "n1");
  // Campaigning again with the same lease keeps the same term.
  BOOST_CHECK_EQUAL(campaign(*a, "/shard/7", la.id, "n1", 2s)->epoch,
                    term_a->epoch);
  // B waits in line while A leads.
  auto waited = campaign(*b, "/shard/7", lb.id, "n2", 300ms);
  BOOST_REQUIRE(!waited);
  BOOST_CHECK(waited.error() == caf::sec::request_timeout);
  // A resigns: B leads, with a greater epoch.
  auto b_term = std::async(std::launch::async, [&] {
    return campaign(*b, "/shard/7", lb.id, "n2", 10s);
  });
  std::this_thread::sleep_for(200ms);
  BOOST_CHECK(b_term.wait_for(0ms) == std::future_status::timeout);
  BOOST_REQUIRE(!resign(*a, *term_a));
  auto term_b = b_term.get();
  BOOST_REQUIRE_MESSAGE(term_b, (term_b ? "" : runtime::describe(term_b.error())));
  BOOST_CHECK_GT(term_b->epoch, term_a->epoch);
  BOOST_CHECK_EQUAL(leader(*a, "/shard/7").value()->value, "n2");
  // A queues again; B's lease ends (a member that stopped renewing): A
  // leads with a greater epoch still.
  auto la2 = a->grant(5s).value();
  auto a_again = std::async(std::launch::async, [&] {
    return campaign(*a, "/shard/7", la2.id, "n1", 10s);
  });
  std::this_thread::sleep_for(200ms);
  BOOST_REQUIRE(!b->revoke(lb.id));
  auto term_a2 = a_again.get();
  BOOST_REQUIRE_MESSAGE(term_a2, (term_a2 ? "" : runtime::describe(term_a2.error())));
  BOOST_CHECK_GT(term_a2->epoch, term_b->epoch);
  // A stale term cannot resign the new one away.
  BOOST_REQUIRE(!resign(*b, *term_b));
  BOOST_CHECK_EQUAL(leader(*b, "/shard/7").value()->value, "n1");
}

BOOST_AUTO_TEST_CASE(an_unreachable_etcd_is_a_clear_error_in_bounded_time) {
  etcd_settings nowhere;
  nowhere.endpoints = {"127.0.0.1:" +
                       std::to_string(mnemo::test::free_port_block(1))};
  nowhere.request_timeout = 500ms;
  auto none = etcd_client::connect(nowhere);
  BOOST_REQUIRE(!none);
  BOOST_CHECK(runtime::is(none.error(), runtime::errc::owner_unavailable));
  BOOST_CHECK_MESSAGE(runtime::describe(none.error()).find(
                          nowhere.endpoints[0]) != std::string::npos,
                      runtime::describe(none.error()));
  BOOST_CHECK(!etcd_client::connect(etcd_settings{}));
  etcd_settings bad;
  bad.endpoints = {"no-port"};
  auto refused = etcd_client::connect(bad);
  BOOST_REQUIRE(!refused);
  BOOST_CHECK(runtime::is(refused.error(), runtime::errc::invalid_argument));
  // A paused etcd (SIGSTOP) accepts connections but answers nothing: a
  // call still ends within its timeout per attempt.
  etcd_server etcd;
  auto quick_settings = etcd.settings();
  quick_settings.request_timeout = 500ms;
  auto quick = etcd_client::connect(quick_settings);
  BOOST_REQUIRE(quick);
  BOOST_REQUIRE(etcd.pause());
  auto p0 = std::chrono::steady_clock::now();
  auto paused = (*quick)->get("/x");
  auto paused_for = std::chrono::steady_clock::now() - p0;
  ::kill(etcd.pid, SIGCONT);
  BOOST_REQUIRE(!paused);
  BOOST_CHECK(runtime::is(paused.error(), runtime::errc::owner_unavailable));
  BOOST_CHECK_MESSAGE(runtime::describe(paused.error()).find("timeout") !=
                          std::string::npos,
                      runtime::describe(paused.error()));
  BOOST_CHECK(paused_for >= 500ms);
  BOOST_CHECK(paused_for < 3s);
  // Resumed, the same client works again.
  BOOST_CHECK((*quick)->put("/x", "0"));
  // etcd goes away under a connected client: calls fail, and soon.
  auto c = etcd.client();
  BOOST_REQUIRE(c->put("/x", "1"));
  etcd.stop();
  auto t0 = std::chrono::steady_clock::now();
  auto lost = c->get("/x");
  BOOST_REQUIRE(!lost);
  BOOST_CHECK(runtime::is(lost.error(), runtime::errc::owner_unavailable));
  BOOST_CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

BOOST_AUTO_TEST_SUITE_END()
