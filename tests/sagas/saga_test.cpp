// Sagas on the deterministic scheduler with virtual time (and a fake wall
// clock for persisted due times): a transfer between test wallets
// (tests/support/wallet_transfer.hpp), retries with backoff, compensation,
// needs-attention, deadlines, restart.

#define BOOST_TEST_MODULE mnemo_sagas
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <random>

#include "../support/wallet_transfer.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_inbox.hpp"
#include "mnemo/sagas/saga_index.hpp"
#include "mnemo/sagas/saga_trigger.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using wallet_model::wallet;
using wallet_model::wallet_transfer;

namespace {

// A saga whose single step and compensation are scripted by the tests.
struct probe_data {
  std::string key;
  MSGPACK_DEFINE_MAP(key)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, probe_data& x) {
  return f(caf::meta::type_name("probe_data"), x.key);
}

struct probe {
  using data = probe_data;
  static constexpr const char* type_name = "probe";
  // Answers of attempt 1, 2, ... of each command; ok once exhausted.
  static inline std::vector<caf::error> step_errors;
  static inline std::vector<caf::error> undo_errors;
  static inline std::vector<std::string> sent;  // command ids
  static inline std::chrono::milliseconds timeout{0};
  static inline std::chrono::milliseconds first_timeout{0};
  static inline std::chrono::milliseconds keep_transient{0};
  static inline uint32_t attempts = 4;  // of the second step

  static sagas::command_fn<data> scripted(std::vector<caf::error>* errors) {
    return
        [errors](caf::event_based_actor*, const sagas::targets&, const data&,
                 const std::string& id, std::function<void(caf::error)> done) {
          sent.push_back(id);
          if (errors->empty()) return done({});
          auto err = errors->front();
          errors->erase(errors->begin());
          done(err);
        };
  }

  static sagas::definition<data> define() {
    sagas::step<data> s0;
    s0.name = "first";
    s0.action = [](caf::event_based_actor*, const sagas::targets&, const data&,
                   const std::string& id,
                   std::function<void(caf::error)> done) {
      sent.push_back(id);
      done({});
    };
    s0.compensation = scripted(&undo_errors);
    s0.retry.backoff.jitter = 0;
    s0.retry.max_attempts = 2;
    s0.timeout = first_timeout;
    sagas::step<data> s1;
    s1.name = "second";
    s1.action = scripted(&step_errors);
    s1.retry.backoff.min_backoff = 100ms;
    s1.retry.backoff.jitter = 0;
    s1.retry.max_attempts = attempts;
    s1.retry.keep_transient_for = keep_transient;
    s1.timeout = timeout;
    sagas::definition<data> def;
    def.steps = {s0, s1};
    return def;
  }

  static void reset() {
    step_errors.clear();
    undo_errors.clear();
    sent.clear();
    timeout = 0ms;
    first_timeout = 0ms;
    keep_transient = 0ms;
    attempts = 4;
  }
};

caf::error transient() {
  return runtime::make_error(runtime::errc::entity_stopped, "try again");
}

// A saga defined as a value (no static define()), whose second step's
// time and whole deadline come from its data: a due date per loan.
struct loan_data {
  std::string key;
  int64_t due_ms = 0;       // when the second step's time ends (0: never)
  int64_t deadline_ms = 0;  // the saga's deadline (0: none)
  MNEMO_MESSAGE(loan_data, key, due_ms, deadline_ms)
};

struct loan {
  using data = loan_data;
  static constexpr const char* type_name = "loan";
};

sagas::definition<loan_data> loan_steps(std::shared_ptr<int> attempts) {
  sagas::step<loan_data> grant;
  grant.name = "grant";
  grant.action = [](caf::event_based_actor*, const sagas::targets&,
                    const loan_data&, const std::string&,
                    std::function<void(caf::error)> done) { done({}); };
  grant.compensation = grant.action;
  sagas::step<loan_data> repay;
  repay.name = "repay";
  repay.action = [attempts](caf::event_based_actor*, const sagas::targets&,
                            const loan_data&, const std::string&,
                            std::function<void(caf::error)> done) {
    ++*attempts;
    done(transient());
  };
  repay.retry.backoff.min_backoff = 100ms;
  repay.retry.backoff.max_backoff = 100ms;
  repay.retry.backoff.jitter = 0;
  repay.retry.max_attempts = 1000;
  repay.due_at = [](const loan_data& d) { return d.due_ms; };
  sagas::definition<loan_data> def;
  def.steps = {grant, repay};
  def.deadline_at = [](const loan_data& d) { return d.deadline_ms; };
  return def;
}

caf::error business() {
  return wallet_model::make_error(wallet_model::wallet_errc::wallet_closed,
                                  "closed");
}

struct saga_fixture : actors::aggregate_fixture<wallet> {
  std::shared_ptr<int64_t> clock = std::make_shared<int64_t>(1'000'000);
  caf::actor wallets;
  caf::actor transfers;
  caf::actor probes;

  saga_fixture() {
    probe::reset();
    sagas::register_types(registry());
    wallets = spawn_registry();
    spawn_sagas();
  }

  void spawn_sagas() {
    auto ctx = saga_ctx();
    transfers = sagas::spawn_saga_registry<wallet_transfer>(system(), ctx, {});
    probes = sagas::spawn_saga_registry<probe>(system(), ctx, {});
    run();
  }

  // The context of the sagas under test: this fixture's journal, the
  // wallet registry, and the fake wall clock.
  sagas::saga_context saga_ctx() {
    sagas::saga_context ctx;
    ctx.journal = &journal();
    ctx.registry = &registry();
    ctx.completions = context().completions;
    ctx.targets = {{"wallet", wallets}};
    auto now = clock;
    ctx.wall_ms = [now] { return *now; };
    return ctx;
  }

  void stop_sagas() {
    for (auto& r : {transfers, probes})
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
    run();
  }

  ~saga_fixture() { stop_sagas(); }

  void tick(std::chrono::milliseconds d) {
    *clock += d.count();
    advance(d);
  }

  int64_t balance(const std::string& id) {
    auto s = request<wallet_model::wallet_state>(
        wallets, runtime::route_atom::value, id,
        caf::make_message(caf::get_atom::value));
    return s ? s->balance : -1;
  }

  template <class S>
  caf::expected<sagas::saga_status> start(const caf::actor& reg,
                                          const std::string& id,
                                          typename S::data d) {
    return request<sagas::saga_status>(
        reg, runtime::route_atom::value, id,
        caf::make_message(sagas::start_atom::value, std::move(d)));
  }

  std::string status(const caf::actor& reg, const std::string& id) {
    auto s = request<sagas::saga_status>(
        reg, runtime::route_atom::value, id,
        caf::make_message(sagas::status_atom::value));
    return s ? s->status : runtime::describe(s.error());
  }

  std::vector<std::string> saga_events(const std::string& stream) {
    std::vector<std::string> types;
    auto evs = journal().read_stream(stream, 1, UINT64_MAX, UINT64_MAX);
    if (evs)
      for (auto& e : *evs) types.push_back(e.type.substr(11));  // "mnemo.saga."
    return types;
  }
};

using strings = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(saga_progress)

BOOST_AUTO_TEST_CASE(progress_folds_the_saga_events) {
  sagas::saga_progress p;
  p.apply(sagas::saga_started{"d", 0, 0});
  BOOST_CHECK(p.phase == sagas::saga_phase::running);
  p.apply(sagas::saga_step_completed{0, 0});
  p.apply(sagas::saga_step_failed{1, 1, "boom", 42, 40});
  BOOST_CHECK_EQUAL(p.step, 1u);
  BOOST_CHECK_EQUAL(p.retry_at_ms, 42);
  p.apply(sagas::saga_compensating{1, "gave up"});
  BOOST_CHECK(p.phase == sagas::saga_phase::compensating);
  BOOST_CHECK_EQUAL(p.step, 1u);
  p.apply(sagas::saga_compensation_done{0});
  BOOST_CHECK_EQUAL(p.step, 0u);
  p.apply(sagas::saga_aborted{"gave up"});
  BOOST_CHECK_EQUAL(std::string{sagas::to_string(p.phase)}, "compensated");
  BOOST_CHECK(sagas::finished(p.phase));
  // Deliveries, taken or ignored, move the last recorded position and
  // nothing else, also after the end.
  sagas::saga_progress q;
  BOOST_CHECK_EQUAL(std::string{sagas::to_string(q.phase)}, "new");
  q.apply(sagas::saga_started{"d", 0, 0});
  q.apply(sagas::saga_event_ignored{7, 0, "t", "no", ""});
  BOOST_CHECK(q.phase == sagas::saga_phase::running);
  BOOST_CHECK_EQUAL(q.last_event, 7u);
  q.apply(sagas::saga_event_received{9, 0, "t", ""});
  // Positions of other logs count per source.
  q.apply(sagas::saga_event_received{30, 0, "t", "shard/2"});
  q.apply(sagas::saga_event_ignored{4, 0, "t", "no", "shard/5"});
  q.apply(sagas::saga_event_ignored{2, 0, "t", "no", "shard/5"});
  BOOST_CHECK_EQUAL(q.last_event, 9u);
  BOOST_CHECK_EQUAL(q.last_event_of(""), 9u);
  BOOST_CHECK_EQUAL(q.last_event_of("shard/2"), 30u);
  BOOST_CHECK_EQUAL(q.last_event_of("shard/5"), 4u);
  BOOST_CHECK_EQUAL(q.last_event_of("shard/1"), 0u);
  q.apply(sagas::saga_completed{});
  q.apply(sagas::saga_event_ignored{12, 1, "t", "no", ""});
  BOOST_CHECK(q.phase == sagas::saga_phase::completed);
  BOOST_CHECK_EQUAL(q.last_event, 12u);
}

BOOST_AUTO_TEST_CASE(
    delivery_events_without_a_source_read_as_the_nodes_journal) {
  // Written before sources existed: the map has no "source" key.
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  pk.pack_map(3);
  pk.pack(std::string{"position"});
  pk.pack(uint64_t{41});
  pk.pack(std::string{"step"});
  pk.pack(uint32_t{2});
  pk.pack(std::string{"type"});
  pk.pack(std::string{"payment.captured"});
  sagas::saga_event_received ev;
  msgpack::unpack(buf.data(), buf.size()).get().convert(ev);
  BOOST_CHECK_EQUAL(ev.position, 41u);
  BOOST_CHECK_EQUAL(ev.step, 2u);
  BOOST_CHECK_EQUAL(ev.type, "payment.captured");
  BOOST_CHECK_EQUAL(ev.source, "");
  sagas::saga_progress p;
  p.apply(sagas::saga_started{"d", 0, 0});
  p.apply(ev);
  BOOST_CHECK_EQUAL(p.last_event_of(""), 41u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(transfer_saga)

BOOST_AUTO_TEST_CASE(a_transfer_completes_and_conserves_money) {
  saga_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::deposit{100}));
  BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::open_wallet{"bob"}));
  auto st = f.start<wallet_transfer>(f.transfers, "t1", {"a1", "a2", 30});
  BOOST_REQUIRE(st);
  f.run();
  BOOST_CHECK_EQUAL(f.status(f.transfers, "t1"), "completed");
  BOOST_CHECK_EQUAL(f.balance("a1"), 70);
  BOOST_CHECK_EQUAL(f.balance("a2"), 30);
  BOOST_CHECK(
      (f.saga_events("saga-move-t1") ==
       strings{"started", "step_completed", "step_completed", "completed"}));
  // Starting the same transfer again starts nothing.
  auto again = f.start<wallet_transfer>(f.transfers, "t1", {"a1", "a2", 30});
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(again->status, "completed");
  f.run();
  BOOST_CHECK_EQUAL(f.balance("a1"), 70);
}

BOOST_AUTO_TEST_CASE(a_failed_deposit_is_compensated) {
  saga_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::deposit{100}));
  BOOST_REQUIRE(
      f.start<wallet_transfer>(f.transfers, "t1", {"a1", "nobody", 40}));
  f.run();
  BOOST_CHECK_EQUAL(f.status(f.transfers, "t1"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a1"), 100);
  BOOST_CHECK((f.saga_events("saga-move-t1") ==
               strings{"started", "step_completed", "step_failed",
                       "compensating", "compensation_done", "aborted"}));
  // The refund carried its own deterministic command id.
  auto events = f.journal().read_stream("wallet-a1", 1, UINT64_MAX, 10);
  BOOST_REQUIRE(events);
  BOOST_CHECK_EQUAL(events->back().metadata.at("mnemo.command"),
                    "saga-move-t1/0/undo");
}

BOOST_AUTO_TEST_CASE(a_rejected_first_step_needs_no_compensation) {
  saga_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::open_wallet{"bob"}));
  BOOST_REQUIRE(f.start<wallet_transfer>(f.transfers, "t1", {"a1", "a2", 5}));
  f.run();
  BOOST_CHECK_EQUAL(f.status(f.transfers, "t1"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a1"), 0);
  BOOST_CHECK_EQUAL(f.balance("a2"), 0);
}

BOOST_AUTO_TEST_CASE(transient_failures_are_retried_with_backoff) {
  saga_fixture f;
  probe::step_errors = {transient(), transient()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "running");
  f.tick(99ms);
  BOOST_CHECK_EQUAL(probe::sent.size(), 2u);  // first + second's attempt 1
  f.tick(1ms);
  BOOST_CHECK_EQUAL(probe::sent.size(), 3u);
  f.tick(200ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "completed");
  // Every attempt of a step carries the same command id.
  BOOST_CHECK(
      (probe::sent == strings{"saga-probe-p1/0/do", "saga-probe-p1/1/do",
                              "saga-probe-p1/1/do", "saga-probe-p1/1/do"}));
}

BOOST_AUTO_TEST_CASE(an_unconnected_owner_is_waited_for_not_compensated) {
  // A step or compensation whose owning member is away (a restart, a cut
  // link) is retried: an earlier attempt may have reached the owner, so
  // giving up would compensate a step that took effect (money created), or
  // leave a withdrawal unrefunded (money lost).
  auto away = [] {
    return runtime::make_error(runtime::errc::owner_unavailable,
                               "member 'n2' is not connected");
  };
  BOOST_CHECK(sagas::transient_error(away()));
  {
    saga_fixture f;
    probe::step_errors = {business()};
    probe::undo_errors = {away()};  // s0 allows 2 attempts
    BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
    f.run();
    for (int i = 0; i < 3; ++i) f.tick(1s);
    BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "compensated");
  }
  saga_fixture f;
  probe::step_errors = {away(), away()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p2", {"k"}));
  f.run();
  for (int i = 0; i < 3; ++i) f.tick(1s);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p2"), "completed");
}

BOOST_AUTO_TEST_CASE(a_failing_compensation_needs_attention) {
  saga_fixture f;
  probe::step_errors = {business()};
  probe::undo_errors = {transient(), business()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "needs_attention");
  BOOST_CHECK((f.saga_events("saga-probe-p1") ==
               strings{"started", "step_completed", "step_failed",
                       "compensating", "compensation_failed",
                       "compensation_failed", "needs_attention"}));
}

// A budget in time (keep_transient_for) retries transient errors past
// max_attempts until it is spent, measured from the first failed attempt;
// a business error still fails at once.
BOOST_AUTO_TEST_CASE(a_time_budget_retries_transient_errors_past_max_attempts) {
  saga_fixture f;
  probe::keep_transient = 3s;
  probe::step_errors = std::vector<caf::error>(20, transient());
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  // Attempts at 0, 0.1, 0.3, 0.7, 1.5 s (backoff doubling from 100 ms):
  // five, one more than max_attempts, and still running.
  for (int i = 0; i < 25; ++i) f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "running");
  auto tries = [] {
    return std::count(probe::sent.begin(), probe::sent.end(),
                      "saga-probe-p1/1/do");
  };
  BOOST_CHECK_EQUAL(tries(), 5);
  // The sixth, at 3.1 s, fails past the budget: compensated.
  for (int i = 0; i < 10; ++i) f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "compensated");
  BOOST_CHECK_EQUAL(tries(), 6);
  // The budget survives a restart: folded from the recorded failures.
  sagas::saga_progress folded;
  actors::variant_codec<sagas::saga_event> codec{f.registry()};
  auto stored =
      f.journal().read_stream("saga-probe-p1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(stored);
  for (auto& e : *stored)
    if (auto ev = codec.decode(e);
        ev && std::holds_alternative<sagas::saga_step_failed>(*ev)) {
      folded.apply(*ev);
      // The fixture's clock at the first failure.
      BOOST_CHECK_EQUAL(std::get<sagas::saga_step_failed>(*ev).failing_since_ms,
                        1'000'000);
    }
  BOOST_CHECK_EQUAL(folded.failing_since_ms, 1'000'000);
  // A business error is final whatever the budget.
  probe::reset();
  probe::keep_transient = 3s;
  probe::step_errors = {business()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p2", {"k"}));
  f.run();
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p2"), "compensated");
}

// The default attempts outlast a failover of a replicated cluster: a step
// whose shard has no leader for 3 s (six transient failures, the last at
// 3.1 s) completes at its seventh attempt, at 6.3 s, instead of being
// compensated (the former default, 5 attempts, gave up at 1.5 s).
BOOST_AUTO_TEST_CASE(the_default_retry_policy_rides_out_a_failover) {
  saga_fixture f;
  probe::attempts = sagas::retry_policy{}.max_attempts;
  probe::keep_transient = sagas::retry_policy{}.keep_transient_for;
  probe::step_errors = std::vector<caf::error>(
      6, runtime::make_error(runtime::errc::owner_unavailable,
                             "shard 3 has no leader"));
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  for (int i = 0; i < 40; ++i) f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "running");
  for (int i = 0; i < 30; ++i) f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "completed");
  BOOST_CHECK_EQUAL(
      std::count(probe::sent.begin(), probe::sent.end(), "saga-probe-p1/1/do"),
      7);
}

BOOST_AUTO_TEST_CASE(a_step_deadline_stops_retries_and_compensates) {
  saga_fixture f;
  probe::timeout = 1s;
  probe::step_errors = {transient(), transient(), transient()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  f.tick(100ms);  // attempt 2 fails, retry due at +200 ms
  f.tick(200ms);  // attempt 3 fails, retry due at +400 ms
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "running");
  f.tick(700ms);  // the deadline (1 s) comes first
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "compensated");
  // Three attempts of the step, no fourth; then the undo of step 0.
  BOOST_CHECK_EQUAL(
      std::count(probe::sent.begin(), probe::sent.end(), "saga-probe-p1/1/do"),
      3);
  BOOST_CHECK_EQUAL(probe::sent.back(), "saga-probe-p1/0/undo");
}

// A step's timeout ends with the step: the next step (without one) retries
// past the moment the earlier step's timeout would have been due.
// Sagas as values, with due times from their data: one registry, one
// definition value, three loans. The one with a due date for its
// repayment step gives up and compensates at that date, the one with a
// deadline at its deadline, the one with neither retries on.
BOOST_AUTO_TEST_CASE(due_dates_come_from_each_sagas_data) {
  saga_fixture f;
  auto attempts = std::make_shared<int>(0);
  auto loans = sagas::spawn_saga_registry<loan>(f.system(), f.saga_ctx(), {},
                                                loan_steps(attempts));
  f.run();
  auto now = *f.clock;
  BOOST_REQUIRE(f.start<loan>(loans, "due", {"a", now + 500, 0}));
  BOOST_REQUIRE(f.start<loan>(loans, "deadline", {"b", 0, now + 1500}));
  BOOST_REQUIRE(f.start<loan>(loans, "open", {"c", 0, 0}));
  f.run();
  for (int i = 0; i < 4; ++i) f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(loans, "due"), "running");
  for (int i = 0; i < 2; ++i) f.tick(100ms);  // 600 ms: past the due date
  BOOST_CHECK_EQUAL(f.status(loans, "due"), "compensated");
  BOOST_CHECK_EQUAL(f.status(loans, "deadline"), "running");
  for (int i = 0; i < 10; ++i) f.tick(100ms);  // 1.6 s: past the deadline
  BOOST_CHECK_EQUAL(f.status(loans, "deadline"), "compensated");
  BOOST_CHECK_EQUAL(f.status(loans, "open"), "running");
  BOOST_CHECK_GT(*attempts, 20);
  caf::anon_send_exit(loans, caf::exit_reason::user_shutdown);
  f.run();
}

BOOST_AUTO_TEST_CASE(a_step_timeout_does_not_outlive_its_step) {
  saga_fixture f;
  probe::first_timeout = 300ms;
  probe::step_errors = {transient(), transient(), transient()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  f.tick(100ms);  // attempt 2 fails, retry due at +200 ms
  f.tick(200ms);  // attempt 3 fails, retry due at +400 ms; step 0's 300 ms
  f.tick(100ms);  // ... have passed
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "running");
  f.tick(300ms);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "completed");
  BOOST_CHECK_EQUAL(
      std::count(probe::sent.begin(), probe::sent.end(), "saga-probe-p1/1/do"),
      4);
}

BOOST_AUTO_TEST_CASE(a_restarted_saga_resumes_with_its_persisted_retry) {
  saga_fixture f;
  probe::step_errors = {transient()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  BOOST_CHECK_EQUAL(probe::sent.size(), 2u);
  // The node dies; 60 ms pass on the wall clock; a new node starts.
  f.stop_sagas();
  *f.clock += 60;
  f.spawn_sagas();
  auto resumed =
      sagas::resume_unfinished<probe>(f.journal(), f.registry(), f.probes);
  BOOST_REQUIRE(resumed);
  BOOST_CHECK_EQUAL(*resumed, 1u);
  f.run();
  BOOST_CHECK_EQUAL(probe::sent.size(), 2u);  // 40 ms of backoff remain
  f.tick(39ms);
  BOOST_CHECK_EQUAL(probe::sent.size(), 2u);
  f.tick(1ms);
  BOOST_CHECK_EQUAL(probe::sent.size(), 3u);
  BOOST_CHECK_EQUAL(f.status(f.probes, "p1"), "completed");
  // Finished sagas are not resumed.
  auto none =
      sagas::resume_unfinished<probe>(f.journal(), f.registry(), f.probes);
  BOOST_REQUIRE(none);
  BOOST_CHECK_EQUAL(*none, 0u);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// Choreography: every opened wallet gets a welcome bonus, by a saga
// started by the wallet.opened event.
struct bonus_data {
  std::string wallet;
  MSGPACK_DEFINE_MAP(wallet)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bonus_data& x) {
  return f(caf::meta::type_name("bonus_data"), x.wallet);
}

struct bonus {
  using data = bonus_data;
  static constexpr const char* type_name = "bonus";
  static sagas::definition<data> define() {
    sagas::step<data> credit;
    credit.name = "credit";
    credit.action = sagas::command<wallet, data>(
        [](const data& d) { return d.wallet; },
        [](const data&) { return wallet::command{wallet_model::deposit{10}}; });
    sagas::definition<data> def;
    def.steps = {credit};
    return def;
  }
};

struct trigger_fixture : saga_fixture {
  caf::actor bonuses;
  caf::actor trigger;
  caf::actor starter;

  trigger_fixture() {
    auto ctx = saga_ctx();
    ctx.wall_ms = nullptr;  // the system clock
    bonuses = sagas::spawn_saga_registry<bonus>(system(), ctx, {});
    actors::projection_filter filter;
    filter.event_types = {"wallet.opened"};
    auto spec = sagas::saga_trigger<bonus>(
        "bonus-trigger", filter, [](const persistence::event_envelope& env) {
          auto id = env.stream_id.substr(std::string{"wallet-"}.size());
          return std::make_optional(
              std::make_pair("welcome-" + id, bonus_data{id}));
        });
    auto p = actors::spawn_projection(
        system(), {&journal(), context().completions, event_bus()}, spec);
    BOOST_REQUIRE(p);
    trigger = *p;
    start_starter();
  }

  void start_starter() {
    starter = sagas::spawn_saga_starter<bonus>(
        system(), journal(), *context().completions, bonuses, event_bus());
    run();
  }

  ~trigger_fixture() {
    for (auto& a : {bonuses, trigger, starter})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    run();
  }

  size_t outbox() {
    size_t n = 0;
    journal().read([&](persistence::read_txn& txn) {
      auto c =
          persistence::table_store::count_in(txn, sagas::outbox_table<bonus>());
      n = c ? *c : 999;
      return persistence::error{};
    });
    return n;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(saga_trigger)

BOOST_AUTO_TEST_CASE(an_event_starts_its_saga_exactly_once) {
  trigger_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.balance("a1"), 10);
  BOOST_CHECK_EQUAL(f.outbox(), 0u);
  // Handling the event again (a replayed offset) records the start again,
  // and starting it again starts nothing new.
  caf::anon_send_exit(f.starter, caf::exit_reason::kill);
  caf::anon_send(f.trigger, actors::reset_atom::value, uint64_t{0});
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.outbox(), 1u);
  f.start_starter();
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.balance("a1"), 10);
  BOOST_CHECK_EQUAL(f.outbox(), 0u);
  BOOST_CHECK((f.saga_events("saga-bonus-welcome-a1") ==
               strings{"started", "step_completed", "completed"}));
}

BOOST_AUTO_TEST_CASE(a_recorded_start_survives_a_dead_starter) {
  trigger_fixture f;
  caf::anon_send_exit(f.starter, caf::exit_reason::kill);
  f.run();
  BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::open_wallet{"bob"}));
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.outbox(), 1u);
  BOOST_CHECK_EQUAL(f.balance("a2"), 0);
  f.start_starter();  // as after a restart
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.balance("a2"), 10);
  BOOST_CHECK_EQUAL(f.outbox(), 0u);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

struct index_fixture : saga_fixture {
  sagas::saga_index index{registry()};
  caf::actor projection;

  index_fixture() {
    actors::projection_context ctx{&journal(), context().completions,
                                   event_bus()};
    auto p = actors::spawn_projection(system(), ctx, index.projection());
    BOOST_REQUIRE(p);
    projection = *p;
    run();
  }

  ~index_fixture() {
    caf::anon_send_exit(projection, caf::exit_reason::user_shutdown);
    run();
  }

  bool rebuild() {
    auto ok = std::make_shared<bool>(false);
    auto dest = projection;
    system().spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, actors::rebuild_atom::value)
          .then([=] { *ok = true; }, [](caf::error&) {});
    });
    run();
    return *ok;
  }

  std::string phase_of(const std::string& type, const std::string& id) {
    auto e = index.get(journal(), type, id);
    if (!e) return e.error().to_string();
    return *e ? sagas::to_string((*e)->phase()) : "absent";
  }

  std::vector<std::string> ids(const std::string& type, sagas::saga_phase p,
                               const std::string& after, size_t limit) {
    std::vector<std::string> result;
    auto rows = index.list(journal(), type, p, after, limit);
    if (rows)
      for (auto& e : *rows) result.push_back(e.id);
    return result;
  }

  // Every saga stream folded by `saga_progress`, as (stream, phase).
  std::map<std::string, std::string> folded() {
    std::map<std::string, std::string> result;
    actors::variant_codec<sagas::saga_event> codec{registry()};
    auto heads = journal().list_streams("saga-", 1000);
    BOOST_REQUIRE(heads);
    for (auto& h : *heads) {
      if (h.stream_id.compare(0, 5, "saga-") != 0) continue;
      sagas::saga_progress p;
      auto evs = journal().read_stream(h.stream_id, 1, UINT64_MAX, UINT64_MAX);
      BOOST_REQUIRE(evs);
      for (auto& env : *evs) p.apply(*codec.decode(env));
      result[h.stream_id] = sagas::to_string(p.phase);
    }
    return result;
  }

  std::map<std::string, std::string> indexed() {
    std::map<std::string, std::string> result;
    for (auto type : {"move", "probe"})
      for (auto p :
           {sagas::saga_phase::running, sagas::saga_phase::compensating,
            sagas::saga_phase::completed, sagas::saga_phase::aborted,
            sagas::saga_phase::needs_attention}) {
        auto rows = index.list(journal(), type, p, "", 1000);
        BOOST_REQUIRE(rows);
        for (auto& e : *rows)
          result[std::string{"saga-"} + type + "-" + e.id] =
              sagas::to_string(e.phase());
      }
    return result;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(saga_index)

BOOST_AUTO_TEST_CASE(stream_ids_split_into_type_and_id) {
  std::string type;
  std::string id;
  BOOST_CHECK(sagas::parse_saga_stream("saga-move-t-1-2", type, id));
  BOOST_CHECK_EQUAL(type, "move");
  BOOST_CHECK_EQUAL(id, "t-1-2");
  BOOST_CHECK(!sagas::parse_saga_stream("wallet-a1", type, id));
  BOOST_CHECK(!sagas::parse_saga_stream("saga--x", type, id));
  BOOST_CHECK(!sagas::parse_saga_stream("saga-move-", type, id));
  BOOST_CHECK(!sagas::parse_saga_stream("saga-move", type, id));
}

BOOST_AUTO_TEST_CASE(the_index_follows_every_phase_and_counts_them) {
  index_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::deposit{100}));
  BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::open_wallet{"bob"}));
  for (auto id : {"t1", "t2", "t3", "t4", "t5"})
    BOOST_REQUIRE(f.start<wallet_transfer>(f.transfers, id, {"a1", "a2", 1}));
  BOOST_REQUIRE(f.start<wallet_transfer>(f.transfers, "x1", {"a1", "zz", 1}));
  probe::step_errors = {business()};
  probe::undo_errors = {business()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p1", {"k"}));
  f.run();
  f.tick(100ms);
  probe::step_errors = {transient(), transient(), transient()};
  BOOST_REQUIRE(f.start<probe>(f.probes, "p2", {"k"}));
  f.run();
  BOOST_CHECK_EQUAL(f.phase_of("move", "t1"), "completed");
  BOOST_CHECK_EQUAL(f.phase_of("move", "x1"), "compensated");
  BOOST_CHECK_EQUAL(f.phase_of("probe", "p1"), "needs_attention");
  BOOST_CHECK_EQUAL(f.phase_of("probe", "p2"), "running");
  BOOST_CHECK_EQUAL(f.phase_of("probe", "nope"), "absent");
  auto p1 = f.index.get(f.journal(), "probe", "p1");
  BOOST_REQUIRE(p1 && *p1);
  BOOST_CHECK(!(*p1)->error.empty());
  BOOST_CHECK_GT((*p1)->position, 0u);
  auto counts = f.index.counts(f.journal(), "move");
  BOOST_REQUIRE(counts);
  BOOST_CHECK((*counts == std::map<std::string, uint64_t>{{"completed", 5},
                                                          {"compensated", 1}}));
  auto probes = f.index.counts(f.journal(), "probe");
  BOOST_REQUIRE(probes);
  BOOST_CHECK((*probes == std::map<std::string, uint64_t>{
                              {"needs_attention", 1}, {"running", 1}}));
  // Paging in id order.
  using strings = std::vector<std::string>;
  auto done = sagas::saga_phase::completed;
  BOOST_CHECK((f.ids("move", done, "", 2) == strings{"t1", "t2"}));
  BOOST_CHECK((f.ids("move", done, "t2", 2) == strings{"t3", "t4"}));
  BOOST_CHECK((f.ids("move", done, "t4", 2) == strings{"t5"}));
  BOOST_CHECK((f.ids("move", done, "t5", 2) == strings{}));
  BOOST_CHECK((f.ids("probe", sagas::saga_phase::needs_attention, "", 10) ==
               strings{"p1"}));
  // The running probe finishes: it moves between phases and counts.
  for (int i = 0; i < 10; ++i) f.tick(200ms);
  BOOST_CHECK_EQUAL(f.phase_of("probe", "p2"), "completed");
  probes = f.index.counts(f.journal(), "probe");
  BOOST_REQUIRE(probes);
  BOOST_CHECK((*probes == std::map<std::string, uint64_t>{
                              {"completed", 1}, {"needs_attention", 1}}));
  // The index equals what folding each saga's stream gives.
  BOOST_CHECK(f.indexed() == f.folded());
}

BOOST_AUTO_TEST_CASE(a_rebuilt_index_equals_the_live_one) {
  index_fixture f;
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(f.wallets, "a1", wallet_model::deposit{1000}));
  BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::open_wallet{"bob"}));
  std::mt19937 rng{5};
  for (int i = 0; i < 40; ++i) {
    auto to = rng() % 4 == 0 ? "ghost" : "a2";
    BOOST_REQUIRE(
        f.start<wallet_transfer>(f.transfers, "t" + std::to_string(i),
                                 {"a1", to, 1 + int64_t(rng() % 50)}));
    if (i == 20)
      BOOST_REQUIRE(f.route(f.wallets, "a2", wallet_model::close_wallet{}));
  }
  f.run();
  auto live = f.indexed();
  BOOST_CHECK_EQUAL(live.size(), 40u);
  BOOST_CHECK(live == f.folded());
  auto counts = f.index.counts(f.journal(), "move");
  BOOST_REQUIRE(f.rebuild());
  f.run();
  BOOST_CHECK(f.indexed() == live);
  auto again = f.index.counts(f.journal(), "move");
  BOOST_REQUIRE(counts && again);
  BOOST_CHECK(*again == *counts);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// A process manager: a saga per wallet that deposits a token 1, then
// waits for a deposit of at least 100 into the wallet (an event of the
// wallet, routed through the saga inbox) before it pays a reward of 5.
// A deposit of exactly 13 is "fraud": the waiting step fails and its own
// compensation withdraws the token again.
struct matcher_data {
  std::string wallet;
  MSGPACK_DEFINE_MAP(wallet)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, matcher_data& x) {
  return f(caf::meta::type_name("matcher_data"), x.wallet);
}

struct matcher {
  using data = matcher_data;
  static constexpr const char* type_name = "matcher";
  static inline std::chrono::milliseconds timeout{0};

  static sagas::definition<data> define() {
    auto of = [](const data& d) { return d.wallet; };
    auto amount = [](int64_t n) {
      return [n](const data&) {
        return wallet::command{wallet_model::deposit{n}};
      };
    };
    sagas::step<data> wait;
    wait.name = "wait for a large deposit";
    wait.action = sagas::command<wallet, data>(of, amount(1));
    wait.await = sagas::await_event<wallet, data>(
        [](const wallet::event& ev, const data&) -> std::optional<caf::error> {
          auto dep = std::get_if<wallet_model::deposited>(&ev);
          if (!dep || (dep->amount < 100 && dep->amount != 13))
            return std::nullopt;
          if (dep->amount == 13)
            return wallet_model::make_error(
                wallet_model::wallet_errc::invalid_amount, "fraud");
          return caf::error{};
        });
    wait.compensation = sagas::command<wallet, data>(of, [](const data&) {
      return wallet::command{wallet_model::withdraw{1}};
    });
    wait.timeout = timeout;
    sagas::step<data> reward;
    reward.name = "reward";
    reward.action = sagas::command<wallet, data>(of, amount(5));
    sagas::definition<data> def;
    def.steps = {wait, reward};
    return def;
  }
};

struct inbox_fixture : saga_fixture {
  caf::actor matchers;
  caf::actor router;
  caf::actor inbox;

  // `source`: the router tags its rows as events of that log (as the
  // copies of `saga_routers` do in a cluster) instead of the journal's.
  explicit inbox_fixture(const std::string& source = {}) {
    matcher::timeout = 0ms;
    spawn_matchers();
    actors::projection_filter filter;
    sagas::correlate_fn correlate = [](const persistence::event_envelope& env)
        -> std::optional<std::string> {
      return env.stream_id.substr(std::string{"wallet-"}.size());
    };
    filter.event_types = {"wallet.deposited"};
    auto spec =
        sagas::saga_router<matcher>("matcher-router", filter, correlate);
    if (!source.empty())
      spec.apply = sagas::detail::route_to_inbox<matcher>(correlate, source);
    auto p = actors::spawn_projection(
        system(), {&journal(), context().completions, event_bus()}, spec);
    BOOST_REQUIRE(p);
    router = *p;
    start_inbox();
  }

  void spawn_matchers(runtime::registry_options opts = {}) {
    auto ctx = saga_ctx();
    matchers = sagas::spawn_saga_registry<matcher>(system(), ctx, opts);
    run();
  }

  void start_inbox() {
    inbox = sagas::spawn_saga_inbox<matcher>(
        system(), journal(), *context().completions, matchers, event_bus());
    run();
  }

  ~inbox_fixture() {
    for (auto& a : {matchers, router, inbox})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    run();
  }

  // (active, passivations) of the matcher registry.
  std::pair<size_t, size_t> matcher_stats() {
    auto out = std::make_shared<std::pair<size_t, size_t>>(99, 99);
    auto dest = matchers;
    system().spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, runtime::stats_atom::value)
          .then([=](size_t active, size_t passivations, size_t) {
            *out = {active, passivations};
          });
    });
    run();
    return *out;
  }

  size_t pending() {
    size_t n = 0;
    journal().read([&](persistence::read_txn& txn) {
      auto c = persistence::table_store::count_in(
          txn, sagas::inbox_table<matcher>());
      n = c ? *c : 999;
      return persistence::error{};
    });
    return n;
  }

  void open_and_start(const std::string& id) {
    BOOST_REQUIRE(route(wallets, id, wallet_model::open_wallet{"owner"}));
    BOOST_REQUIRE(start<matcher>(matchers, id, {id}));
    tick(100ms);
  }

  void deposit(const std::string& id, int64_t n) {
    BOOST_REQUIRE(route(wallets, id, wallet_model::deposit{n}));
    tick(100ms);
  }

  // Replays the router from offset 0: it writes every row again.
  void replay_router() {
    caf::anon_send(router, actors::reset_atom::value, uint64_t{0});
    tick(100ms);
    tick(100ms);
  }

  // Delivers the event `event` (encoded) of log `source` at `position` to
  // matcher `id`, as another member's inbox would.
  caf::expected<bool> deliver(const std::string& id, const std::string& source,
                              uint64_t position, std::string event) {
    return request<bool>(matchers, runtime::route_atom::value, id,
                         caf::make_message(sagas::deliver_atom::value, source,
                                           position, std::move(event)));
  }

  bool delivered(const std::string& id, const std::string& source,
                 uint64_t position, std::string event) {
    auto r = deliver(id, source, position, std::move(event));
    if (!r) BOOST_TEST_MESSAGE(runtime::describe(r.error()));
    return r && *r;
  }

  // The newest event of `stream`, encoded.
  std::string last_event_of(const std::string& stream) {
    auto evs = journal().read_stream(stream, 1, UINT64_MAX, UINT64_MAX);
    BOOST_REQUIRE(evs && !evs->empty());
    return persistence::encode_event(evs->back());
  }

  // The sources of the deliveries saga `stream` recorded, in order.
  strings delivery_sources(const std::string& stream) {
    strings out;
    auto evs = journal().read_stream(stream, 1, UINT64_MAX, UINT64_MAX);
    if (!evs) return out;
    actors::variant_codec<sagas::saga_event> codec{registry()};
    for (auto& e : *evs) {
      auto ev = codec.decode(e);
      if (!ev) continue;
      if (auto* r = std::get_if<sagas::saga_event_received>(&*ev))
        out.push_back("received " + r->source + "@" +
                      std::to_string(r->position));
      if (auto* i = std::get_if<sagas::saga_event_ignored>(&*ev))
        out.push_back("ignored " + i->source + "@" +
                      std::to_string(i->position));
    }
    return out;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(process_manager)

BOOST_AUTO_TEST_CASE(inbox_keys_keep_commit_order_per_saga) {
  auto k1 = sagas::detail::inbox_key("s1", 9);
  auto k2 = sagas::detail::inbox_key("s1", 10);
  auto k3 = sagas::detail::inbox_key("s1", 0x100000000ull);
  BOOST_CHECK(k1 < k2 && k2 < k3);
  // A saga's keys share its prefix and end before `inbox_end`, which comes
  // before the keys of any other saga after it.
  BOOST_CHECK(k1.compare(0, 3, sagas::detail::inbox_prefix("s1")) == 0);
  BOOST_CHECK(k3 < sagas::detail::inbox_end("s1"));
  BOOST_CHECK(sagas::detail::inbox_end("s1") <
              sagas::detail::inbox_key("s1a", 0));
  BOOST_CHECK(sagas::detail::inbox_key("s", 99) < k1);
  auto parsed = sagas::detail::parse_inbox_key(k3);
  BOOST_REQUIRE(parsed);
  BOOST_CHECK_EQUAL(parsed->saga_id, "s1");
  BOOST_CHECK_EQUAL(parsed->position, 0x100000000ull);
  BOOST_CHECK_EQUAL(parsed->source, "");
  // Keys of another log carry its name after the position; per source they
  // keep commit order, and they stay within the saga's range.
  auto s1 = sagas::detail::inbox_key("s1", 9, "shard/3");
  auto s2 = sagas::detail::inbox_key("s1", 10, "shard/3");
  BOOST_CHECK(s1 < s2 && s2 < sagas::detail::inbox_end("s1"));
  BOOST_CHECK(s1.compare(0, 3, sagas::detail::inbox_prefix("s1")) == 0);
  auto sourced = sagas::detail::parse_inbox_key(s2);
  BOOST_REQUIRE(sourced);
  BOOST_CHECK_EQUAL(sourced->saga_id, "s1");
  BOOST_CHECK_EQUAL(sourced->position, 10u);
  BOOST_CHECK_EQUAL(sourced->source, "shard/3");
  BOOST_CHECK(!sagas::detail::parse_inbox_key("no-separator"));
  BOOST_CHECK(!sagas::detail::parse_inbox_key(std::string{"s\0zz", 4}));
  BOOST_CHECK(!sagas::detail::parse_inbox_key(std::string{"s"} + '\0' +
                                              "000000000000000z" + "shard/1"));
}

BOOST_AUTO_TEST_CASE(a_correlated_event_decides_the_waiting_step) {
  inbox_fixture f;
  f.open_and_start("a1");
  // The token deposit is an event of a1 too: routed, delivered, and
  // recorded as ignored (the waiting step does not take it).
  BOOST_CHECK_EQUAL(f.balance("a1"), 1);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a1"), "running");
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  f.deposit("a1", 50);  // too small: still waiting
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a1"), "running");
  f.deposit("a1", 100);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a1"), "completed");
  BOOST_CHECK_EQUAL(f.balance("a1"), 1 + 50 + 100 + 5);
  f.tick(100ms);  // the reward's own deposit is delivered too
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  BOOST_CHECK((f.saga_events("saga-matcher-a1") ==
               strings{"started", "event_ignored", "event_ignored",
                       "event_received", "step_completed", "step_completed",
                       "completed", "event_ignored"}));
}

BOOST_AUTO_TEST_CASE(a_failing_event_compensates_the_waiting_step_itself) {
  inbox_fixture f;
  f.open_and_start("a2");
  f.deposit("a2", 13);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a2"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a2"), 13);  // the token went back
  BOOST_CHECK(
      (f.saga_events("saga-matcher-a2") ==
       strings{"started", "event_ignored", "event_received", "step_failed",
               "compensating", "compensation_done", "aborted"}));
  // Later events concern no waiting step: recorded as ignored, and nothing
  // else changes.
  f.deposit("a2", 100);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a2"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a2"), 113);
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  auto after = f.saga_events("saga-matcher-a2");
  BOOST_CHECK_EQUAL(after.size(), 8u);
  BOOST_CHECK_EQUAL(after.back(), "event_ignored");
}

BOOST_AUTO_TEST_CASE(a_wait_past_the_step_timeout_fails_and_compensates) {
  inbox_fixture f;
  matcher::timeout = 1000ms;
  f.open_and_start("a3");
  BOOST_CHECK_EQUAL(f.balance("a3"), 1);
  f.tick(500ms);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a3"), "running");
  f.tick(600ms);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a3"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a3"), 0);
  // The event that comes too late decides nothing.
  f.deposit("a3", 100);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a3"), "compensated");
  BOOST_CHECK_EQUAL(f.balance("a3"), 100);
}

BOOST_AUTO_TEST_CASE(a_routed_event_is_applied_once_also_when_routed_again) {
  inbox_fixture f;
  f.open_and_start("a4");
  f.deposit("a4", 200);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a4"), "completed");
  f.tick(100ms);  // the reward's own deposit is delivered (and ignored)
  auto before = f.saga_events("saga-matcher-a4");
  // Replaying the router writes every row again; the saga recognises the
  // delivered positions and the inbox drains.
  f.replay_router();
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  BOOST_CHECK(f.saga_events("saga-matcher-a4") == before);
  BOOST_CHECK_EQUAL(f.balance("a4"), 1 + 200 + 5);
}

BOOST_AUTO_TEST_CASE(
    events_of_another_log_travel_in_their_rows_and_count_per_source) {
  // The router tags its rows as events of "shard/9" (a router copy of a
  // replicated cluster): each row holds the event, the saga judges that
  // copy and records the source with the position.
  inbox_fixture f{"shard/9"};
  f.open_and_start("a7");
  f.deposit("a7", 100);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a7"), "completed");
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  auto recorded = f.delivery_sources("saga-matcher-a7");
  BOOST_REQUIRE_EQUAL(recorded.size(), 3u);  // token, 100, reward
  BOOST_CHECK_EQUAL(recorded[0].substr(0, 16), "ignored shard/9@");
  BOOST_CHECK_EQUAL(recorded[1].substr(0, 17), "received shard/9@");
  // Replayed by the router: the same rows again, recognised as repeats.
  f.replay_router();
  BOOST_CHECK_EQUAL(f.pending(), 0u);
  BOOST_CHECK(f.delivery_sources("saga-matcher-a7") == recorded);
  BOOST_CHECK_EQUAL(f.balance("a7"), 1 + 100 + 5);
}

BOOST_AUTO_TEST_CASE(deliveries_from_several_logs_are_told_apart_by_source) {
  inbox_fixture f;
  f.open_and_start("a8");
  f.deposit("a8", 100);  // decides the step through the local inbox
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a8"), "completed");
  f.tick(100ms);
  auto event = f.last_event_of("wallet-a8");
  auto before = f.saga_events("saga-matcher-a8").size();
  // Position 40 of shard/1: new, recorded (ignored: the saga is done).
  auto r = f.deliver("a8", "shard/1", 40, event);
  BOOST_REQUIRE_MESSAGE(r, (r ? "" : runtime::describe(r.error())));
  BOOST_CHECK(*r);
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 1);
  // The same again (another member's inbox), or an earlier position of
  // that log: repeats, nothing recorded.
  BOOST_CHECK(f.delivered("a8", "shard/1", 40, event));
  BOOST_CHECK(f.delivered("a8", "shard/1", 12, event));
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 1);
  // Position 40 of another log is another event.
  BOOST_CHECK(f.delivered("a8", "shard/2", 40, event));
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 2);
  // Per source also after a restart: the positions are folded from the
  // saga's events.
  caf::anon_send_exit(f.matchers, caf::exit_reason::kill);
  f.run();
  f.spawn_matchers();
  BOOST_CHECK(f.delivered("a8", "shard/1", 40, event));
  BOOST_CHECK(f.delivered("a8", "shard/2", 40, event));
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 2);
  auto sources = f.delivery_sources("saga-matcher-a8");
  BOOST_CHECK_EQUAL(sources[sources.size() - 2], "ignored shard/1@40");
  BOOST_CHECK_EQUAL(sources.back(), "ignored shard/2@40");
  // Bad deliveries get clear errors and record nothing.
  auto damaged = f.deliver("a8", "shard/3", 7, "not an event");
  BOOST_REQUIRE(!damaged);
  BOOST_CHECK(runtime::is(damaged.error(), persistence::errc::corrupt_record));
  BOOST_CHECK(runtime::describe(damaged.error()).find("does not decode") !=
              std::string::npos);
  auto bare = f.deliver("a8", "shard/3", 7, "");
  BOOST_REQUIRE(!bare);
  BOOST_CHECK(runtime::is(bare.error(), runtime::errc::invalid_argument));
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 2);
  // The damaged one did not block the log: a good event of shard/3 passes.
  BOOST_CHECK(f.delivered("a8", "shard/3", 8, event));
  BOOST_CHECK_EQUAL(f.saga_events("saga-matcher-a8").size(), before + 3);
}

BOOST_AUTO_TEST_CASE(rows_wait_in_the_inbox_while_it_is_down) {
  inbox_fixture f;
  f.open_and_start("a5");
  caf::anon_send_exit(f.inbox, caf::exit_reason::kill);
  f.run();
  f.deposit("a5", 150);
  BOOST_CHECK_EQUAL(f.pending(), 1u);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a5"), "running");
  f.start_inbox();  // as after a restart
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a5"), "completed");
  f.tick(100ms);  // the reward's own deposit is delivered too
  BOOST_CHECK_EQUAL(f.pending(), 0u);
}

BOOST_AUTO_TEST_CASE(a_restarted_waiting_saga_resends_its_command_once) {
  inbox_fixture f;
  f.open_and_start("a6");
  caf::anon_send_exit(f.matchers, caf::exit_reason::kill);
  f.run();
  f.spawn_matchers();
  caf::anon_send_exit(f.inbox, caf::exit_reason::kill);
  f.run();
  f.start_inbox();
  auto resumed =
      sagas::resume_unfinished<matcher>(f.journal(), f.registry(), f.matchers);
  BOOST_REQUIRE(resumed);
  BOOST_CHECK_EQUAL(*resumed, 1u);
  f.tick(100ms);
  BOOST_CHECK_EQUAL(f.balance("a6"), 1);  // the token once, not twice
  f.deposit("a6", 100);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a6"), "completed");
  BOOST_CHECK_EQUAL(f.balance("a6"), 106);
}

BOOST_AUTO_TEST_CASE(a_passivated_waiting_saga_is_woken_by_its_event) {
  inbox_fixture f;
  caf::anon_send_exit(f.matchers, caf::exit_reason::user_shutdown);
  f.run();
  runtime::registry_options opts;
  opts.idle_timeout = 1000ms;
  f.spawn_matchers(opts);
  caf::anon_send_exit(f.inbox, caf::exit_reason::kill);
  f.run();
  f.start_inbox();
  f.open_and_start("a7");
  BOOST_CHECK_EQUAL(f.matcher_stats().first, 1u);
  for (int i = 0; i < 5; ++i) f.tick(500ms);
  // Idle while waiting, without a deadline: passivated and not woken.
  auto [active, passivations] = f.matcher_stats();
  BOOST_CHECK_EQUAL(active, 0u);
  BOOST_CHECK_GE(passivations, 1u);
  f.deposit("a7", 100);  // the delivery activates it
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a7"), "completed");
  BOOST_CHECK_EQUAL(f.balance("a7"), 106);
}

// In a cluster a member that stops leading a shard passivates its sagas;
// one that asks to be woken must be woken where its shard is led now, so
// the wake goes through `wake_via` (the registry's router), not back to
// the registry that passivated it.
BOOST_AUTO_TEST_CASE(a_passivated_saga_asks_to_be_woken_through_wake_via) {
  inbox_fixture f;
  matcher::timeout = 5000ms;
  caf::anon_send_exit(f.matchers, caf::exit_reason::user_shutdown);
  f.run();
  auto woken = std::make_shared<strings>();
  auto recorder =
      f.system().spawn([woken](caf::event_based_actor*) -> caf::behavior {
        return {
            [woken](runtime::route_atom, std::string& id, caf::message& msg) {
              if (msg.match_elements<sagas::status_atom>())
                woken->push_back(id);
            }};
      });
  runtime::registry_options opts;
  opts.idle_timeout = 1000ms;
  auto ctx = f.saga_ctx();
  ctx.wake_via = std::make_shared<sagas::saga_wake>();
  ctx.wake_via->set(recorder);
  f.matchers = sagas::spawn_saga_registry<matcher>(f.system(), ctx, opts);
  f.run();
  f.open_and_start("a9");
  for (int i = 0; i < 5; ++i) f.tick(500ms);
  BOOST_CHECK_EQUAL(f.matcher_stats().first, 0u);  // passivated
  for (int i = 0; i < 6; ++i) f.tick(500ms);
  // Its deadline passed: the wake went to `wake_via`, and this registry
  // did not run it again (nothing compensated the token here).
  BOOST_CHECK((*woken == strings{"a9"}));
  BOOST_CHECK_EQUAL(f.matcher_stats().first, 0u);
  BOOST_CHECK_EQUAL(f.balance("a9"), 1);
  caf::anon_send_exit(recorder, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(a_passivated_waiting_saga_wakes_for_its_deadline) {
  inbox_fixture f;
  matcher::timeout = 5000ms;
  caf::anon_send_exit(f.matchers, caf::exit_reason::user_shutdown);
  f.run();
  runtime::registry_options opts;
  opts.idle_timeout = 1000ms;
  f.spawn_matchers(opts);
  f.open_and_start("a8");
  for (int i = 0; i < 5; ++i) f.tick(500ms);
  BOOST_CHECK_EQUAL(f.matcher_stats().first, 0u);
  for (int i = 0; i < 6; ++i) f.tick(500ms);
  // Woken at its due time, it gave up and compensated on its own.
  BOOST_CHECK_EQUAL(f.balance("a8"), 0);
  BOOST_CHECK_EQUAL(f.status(f.matchers, "a8"), "compensated");
}

BOOST_AUTO_TEST_SUITE_END()
