// Projections that follow another member's journal: two cluster members
// in this process (two actor systems, two journals) talk over loopback.
// The follower catches up in batches and then runs live, each event is
// applied exactly once across restarts of the source and of the follower,
// and failing events are parked and retried from the source. (Networked, hence
// polled with deadlines, not the deterministic scheduler.)

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "../support/free_ports.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/read_model.hpp"
#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret = "remote-projection-test-secret";

struct member {
  std::unique_ptr<runtime::node_config> cfg;
  std::unique_ptr<runtime::node> node;
};

// Events per stream and in total, kept by an exactly-once projection.
struct counts_model {
  persistence::table<std::string, int64_t> counts{"test.counts"};
  // How many times `apply` ran, whatever committed (shared, any thread).
  std::shared_ptr<std::atomic<int64_t>> applied =
      std::make_shared<std::atomic<int64_t>>(0);

  actors::projection_spec spec(const std::string& name,
                               const std::string& source, size_t batch) const {
    actors::projection_spec s;
    s.name = name;
    s.source = source;
    s.options.batch_size = batch;
    s.apply = [c = counts, n = applied](persistence::write_txn& txn,
                                        const persistence::event_envelope& e) {
      ++*n;
      for (auto key : {e.stream_id, std::string{"all"}}) {
        auto cur = c.get(txn, key);
        if (!cur) return cur.error();
        if (auto err = c.put(txn, key, cur->value_or(0) + 1)) return err;
      }
      return persistence::error{};
    };
    s.clear = [c = counts](persistence::write_txn& txn) {
      auto n = c.clear(txn);
      return n ? persistence::error{} : n.error();
    };
    return s;
  }

  int64_t get(runtime::node& n, const std::string& key) const {
    int64_t result = -1;
    auto err = n.journal().read([&](persistence::read_txn& txn) {
      auto v = counts.get(txn, key);
      if (!v) return v.error();
      result = v->value_or(0);
      return persistence::error{};
    });
    BOOST_REQUIRE(!err);
    return result;
  }
};

std::string two_members() {
  auto base = mnemo::test::free_port_block(2);
  return "n1@127.0.0.1:" + std::to_string(base) +
         ",n2@127.0.0.1:" + std::to_string(base + 1);
}

struct remote_fixture {
  std::string members = two_members();
  actors::temp_directory dir1;
  actors::temp_directory dir2;
  member m1;
  member m2;
  counts_model model;

  remote_fixture() {
    m1 = start("n1", dir1);
    m2 = start("n2", dir2);
    BOOST_REQUIRE(joined());
  }

  member start(const std::string& id, const actors::temp_directory& dir) {
    member m;
    m.cfg = std::make_unique<runtime::node_config>();
    m.cfg->data_dir = dir.path().string();
    m.cfg->durability = "nosync";
    m.cfg->cluster.node_id = id;
    m.cfg->cluster_members = members;
    m.cfg->cluster.secret = secret;
    m.cfg->cluster.plain_tcp = true;
    m.cfg->cluster.retry_ms = 50;
    m.cfg->cluster_events = [](const std::string&, const std::string&) {};
    m.cfg->set("scheduler.max-threads", 2);
    auto n = runtime::node::start(*m.cfg);
    if (!n) BOOST_FAIL(runtime::describe(n.error()));
    m.node = std::move(*n);
    return m;
  }

  bool joined() {
    return eventually([&] {
      return m1.node && m2.node &&
             m1.node->cluster()->connected().size() == 1 &&
             m2.node->cluster()->connected().size() == 1;
    });
  }

  template <class Predicate>
  static bool eventually(Predicate p, std::chrono::milliseconds limit = 15s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (p()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return p();
  }

  // Appends `n` events to streams s-0 .. s-4 of `m`.
  static void append(member& m, int n, int first = 0) {
    for (int i = first; i < first + n; ++i) {
      persistence::new_event ev;
      ev.type = "test.happened";
      ev.payload = {0x80};  // an empty msgpack map
      auto r = m.node->journal().append("s-" + std::to_string(i % 5), {ev},
                                        persistence::expected_version::any());
      BOOST_REQUIRE(r);
    }
  }

  caf::actor follow(member& m, const std::string& source, size_t batch) {
    actors::projection_context ctx{&m.node->journal(), &m.node->completions(),
                                   m.node->event_bus(), nullptr,
                                   m.node->cluster()};
    auto p = actors::spawn_projection(
        m.node->system(), ctx, model.spec("counts@" + source, source, batch));
    if (!p) BOOST_FAIL(runtime::describe(p.error()));
    m.node->track(*p);
    return *p;
  }

  static actors::projection_status status(member& m, const caf::actor& p) {
    caf::scoped_actor self{m.node->system()};
    actors::projection_status result;
    self->request(p, 5s, actors::status_atom::value)
        .receive([&](actors::projection_status& st) { result = st; },
                 [&](caf::error& err) {
                   BOOST_FAIL("status: " << runtime::describe(err));
                 });
    return result;
  }

  // Waits until projection `p` on `m` has handled `offset` events.
  bool reaches(member& m, const caf::actor& p, uint64_t offset) {
    return eventually([&] { return status(m, p).offset == offset; });
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(remote_projection)

BOOST_AUTO_TEST_CASE(follows_another_members_journal_in_batches_then_live) {
  remote_fixture f;
  remote_fixture::append(f.m1, 53);
  auto p = f.follow(f.m2, "n1", 7);
  BOOST_REQUIRE(f.reaches(f.m2, p, 53));
  auto st = remote_fixture::status(f.m2, p);
  BOOST_CHECK_EQUAL(st.source, "n1");
  BOOST_CHECK(st.available);
  BOOST_CHECK_EQUAL(st.head, 53u);
  BOOST_CHECK_EQUAL(st.lag, 0u);
  // Live: every new commit is announced and pulled.
  for (int round = 0; round < 5; ++round) remote_fixture::append(f.m1, 3, 53 + round);
  BOOST_REQUIRE(f.reaches(f.m2, p, 68));
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 68);
  for (int s = 0; s < 5; ++s)
    BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "s-" + std::to_string(s)),
                      68 / 5 + (s < 68 % 5 ? 1 : 0));
  // The source's own journal holds no read model: nothing was written there.
  BOOST_CHECK_EQUAL(f.model.get(*f.m1.node, "all"), 0);
  BOOST_CHECK_EQUAL(*f.model.applied, 68);
}

BOOST_AUTO_TEST_CASE(a_restarted_source_is_followed_on_from_the_offset) {
  remote_fixture f;
  remote_fixture::append(f.m1, 30);
  auto p = f.follow(f.m2, "n1", 10);
  BOOST_REQUIRE(f.reaches(f.m2, p, 30));
  f.m1.node.reset();
  // While the source is away the follower says so and keeps its offset.
  BOOST_CHECK(
      remote_fixture::eventually([&] { return !remote_fixture::status(f.m2, p).available; }));
  BOOST_CHECK_EQUAL(remote_fixture::status(f.m2, p).offset, 30u);
  f.m1 = f.start("n1", f.dir1);
  BOOST_REQUIRE(f.joined());
  remote_fixture::append(f.m1, 20, 30);
  BOOST_REQUIRE(f.reaches(f.m2, p, 50));
  BOOST_CHECK(remote_fixture::status(f.m2, p).available);
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 50);
  BOOST_CHECK_EQUAL(*f.model.applied, 50);
}

BOOST_AUTO_TEST_CASE(a_source_away_at_start_is_followed_once_it_joins) {
  remote_fixture f;
  remote_fixture::append(f.m1, 15);
  f.m1.node.reset();
  BOOST_REQUIRE(remote_fixture::eventually(
      [&] { return f.m2.node->cluster()->connected().empty(); }));
  auto p = f.follow(f.m2, "n1", 4);
  auto st = remote_fixture::status(f.m2, p);
  BOOST_CHECK(!st.available);
  BOOST_CHECK_EQUAL(st.offset, 0u);
  f.m1 = f.start("n1", f.dir1);
  BOOST_REQUIRE(f.reaches(f.m2, p, 15));
  BOOST_CHECK(remote_fixture::status(f.m2, p).available);
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 15);
}

BOOST_AUTO_TEST_CASE(a_restarted_follower_resumes_and_applies_nothing_twice) {
  remote_fixture f;
  remote_fixture::append(f.m1, 30);
  auto p = f.follow(f.m2, "n1", 4);
  BOOST_REQUIRE(f.reaches(f.m2, p, 30));
  f.m2.node.reset();
  remote_fixture::append(f.m1, 25, 30);
  f.m2 = f.start("n2", f.dir2);
  BOOST_REQUIRE(f.joined());
  p = f.follow(f.m2, "n1", 4);
  BOOST_REQUIRE(f.reaches(f.m2, p, 55));
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 55);
  // 30 before the restart, 25 after: none repeated.
  BOOST_CHECK_EQUAL(*f.model.applied, 55);
}

BOOST_AUTO_TEST_CASE(failures_park_remote_events_and_retry_fetches_them) {
  remote_fixture f;
  remote_fixture::append(f.m1, 10);  // s-3 holds positions 4 and 9
  auto broken = std::make_shared<std::atomic<bool>>(true);
  auto spec = f.model.spec("counts@n1", "n1", 3);
  spec.options.on_failure = actors::failure_strategy::skip;
  spec.apply = [inner = spec.apply, broken](
                   persistence::write_txn& txn,
                   const persistence::event_envelope& e) {
    if (*broken && e.stream_id == "s-3")
      return persistence::error{persistence::errc::invalid_argument, "bad"};
    return inner(txn, e);
  };
  actors::projection_context ctx{
      &f.m2.node->journal(), &f.m2.node->completions(), f.m2.node->event_bus(),
      nullptr, f.m2.node->cluster()};
  auto p = actors::spawn_projection(f.m2.node->system(), ctx, spec);
  BOOST_REQUIRE(p);
  f.m2.node->track(*p);
  BOOST_REQUIRE(f.reaches(f.m2, *p, 10));
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 8);
  caf::scoped_actor self{f.m2.node->system()};
  std::vector<actors::dead_letter_info> letters;
  self->request(*p, 5s, actors::dead_letters_atom::value, uint64_t{0},
                uint64_t{100})
      .receive([&](std::vector<actors::dead_letter_info>& xs) { letters = xs; },
               [&](caf::error& err) { BOOST_FAIL(runtime::describe(err)); });
  BOOST_REQUIRE_EQUAL(letters.size(), 2u);
  BOOST_CHECK_EQUAL(letters[0].position, 4u);
  BOOST_CHECK_EQUAL(letters[1].position, 9u);
  BOOST_CHECK_EQUAL(letters[0].stream_id, "s-3");
  // Fixed: a retry fetches the parked event from n1 and applies it once.
  *broken = false;
  bool retried = false;
  self->request(*p, 5s, actors::retry_dead_atom::value, uint64_t{9})
      .receive([&]() { retried = true; },
               [&](caf::error& err) { BOOST_FAIL(runtime::describe(err)); });
  BOOST_CHECK(retried);
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "s-3"), 1);
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 9);
}

BOOST_AUTO_TEST_CASE(a_source_that_is_not_a_member_is_refused) {
  remote_fixture f;
  actors::projection_context ctx{
      &f.m2.node->journal(), &f.m2.node->completions(), f.m2.node->event_bus(),
      nullptr, f.m2.node->cluster()};
  auto p = actors::spawn_projection(f.m2.node->system(), ctx,
                                    f.model.spec("x", "n9", 10));
  BOOST_CHECK(!p && runtime::is(p.error(), runtime::errc::invalid_argument));
  ctx.cluster = nullptr;
  p = actors::spawn_projection(f.m2.node->system(), ctx,
                               f.model.spec("x", "n1", 10));
  BOOST_CHECK(!p && runtime::is(p.error(), runtime::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(a_cluster_wide_model_counts_every_members_events_once) {
  remote_fixture f;
  remote_fixture::append(f.m1, 12);
  remote_fixture::append(f.m2, 9);
  std::vector<caf::actor> ps;
  for (auto& spec :
       actors::cluster_wide(f.model.spec("all", "", 5), f.m2.node->cluster())) {
    actors::projection_context ctx{
        &f.m2.node->journal(), &f.m2.node->completions(),
        f.m2.node->event_bus(), nullptr, f.m2.node->cluster()};
    auto p = actors::spawn_projection(f.m2.node->system(), ctx, spec);
    BOOST_REQUIRE(p);
    f.m2.node->track(*p);
    ps.push_back(*p);
  }
  BOOST_REQUIRE_EQUAL(ps.size(), 2u);
  BOOST_CHECK(
      f.eventually([&] { return f.model.get(*f.m2.node, "all") == 21; }));
  remote_fixture::append(f.m1, 4, 12);
  remote_fixture::append(f.m2, 6, 9);
  BOOST_CHECK(
      f.eventually([&] { return f.model.get(*f.m2.node, "all") == 31; }));
  auto local = remote_fixture::status(f.m2, ps[0]);
  auto remote = remote_fixture::status(f.m2, ps[1]);
  BOOST_CHECK_EQUAL(local.name, "all@local");
  BOOST_CHECK_EQUAL(local.offset, 15u);
  BOOST_CHECK_EQUAL(remote.name, "all@n1");
  BOOST_CHECK_EQUAL(remote.offset, 16u);
  // No clear function: a rebuild of one source would wipe the others.
  caf::scoped_actor self{f.m2.node->system()};
  auto refused = [&](caf::message msg, size_t i) {
    bool result = false;
    self->request(ps[i], 5s, std::move(msg))
        .receive([]() {},
                 [&](caf::error& err) {
                   result = runtime::is(err, runtime::errc::invalid_argument);
                 });
    return result;
  };
  BOOST_CHECK(refused(caf::make_message(actors::rebuild_atom::value), 1));
  // Nor a shared rebuild while the copy runs.
  BOOST_CHECK(refused(caf::make_message(actors::rebuild_shared_atom::value), 0));
  // The model is rebuilt as a whole: cleared once, both copies from 0.
  auto router = f.m2.node->system().spawn([ps](caf::event_based_actor* r)
                                              -> caf::behavior {
    return {[=](runtime::route_atom, const std::string& name,
                caf::message& msg) {
      return r->delegate(name == "all@local" ? ps[0] : ps[1], std::move(msg));
    }};
  });
  auto applied_before = f.model.applied->load();
  auto done = std::make_shared<std::promise<caf::error>>();
  auto result = done->get_future();
  f.m2.node->system().spawn([router, done](caf::event_based_actor* a) {
    actors::rebuild_together(a, router, {"all@local", "all@n1"}, 5s,
                             [done](caf::error err) {
                               done->set_value(std::move(err));
                             });
  });
  BOOST_REQUIRE(result.wait_for(10s) == std::future_status::ready);
  auto err = result.get();
  BOOST_REQUIRE_MESSAGE(!err, runtime::describe(err));
  BOOST_CHECK(
      f.eventually([&] { return f.model.get(*f.m2.node, "all") == 31; }));
  BOOST_CHECK(f.eventually([&] {
    return remote_fixture::status(f.m2, ps[0]).offset == 15u &&
           remote_fixture::status(f.m2, ps[1]).offset == 16u;
  }));
  // Every event was applied again, once.
  BOOST_CHECK_EQUAL(f.model.applied->load() - applied_before, 31);
  BOOST_CHECK(!remote_fixture::status(f.m2, ps[0]).paused);
  BOOST_CHECK_EQUAL(f.model.get(*f.m2.node, "all"), 31);
  caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
