// mnemo-bank: runs one command against a bank account aggregate on a node
// and prints the new events and the state as JSON lines. Every run recovers
// the account from the journal in the data directory.
//
//   mnemo-bank --data-dir=DIR open ID OWNER
//   mnemo-bank --data-dir=DIR deposit|withdraw ID AMOUNT [COMMAND_ID]
//   mnemo-bank --data-dir=DIR close ID
//   mnemo-bank --data-dir=DIR show ID
//   mnemo-bank --data-dir=DIR balance ID | balances | owner OWNER
//     (queries of the balances read model, kept by a projection)
//   mnemo-bank --help          (all node options)

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "account.hpp"
#include "balances.hpp"
#include "mnemo/actors/aggregate.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;

namespace {

constexpr const char* usage =
    "usage: mnemo-bank [--data-dir=DIR] open ID OWNER\n"
    "       mnemo-bank [--data-dir=DIR] deposit|withdraw ID AMOUNT "
    "[COMMAND_ID]\n"
    "       mnemo-bank [--data-dir=DIR] close ID | show ID\n"
    "       mnemo-bank [--data-dir=DIR] balance ID | balances | owner OWNER\n";

struct parsed {
  std::string verb;
  std::string id;
  bank::account::command cmd;
  std::string command_id;
};

bool is_query(const std::string& verb) {
  return verb == "balance" || verb == "balances" || verb == "owner";
}

bool parse_command(const std::vector<std::string>& args, parsed& out) {
  if (args.size() == 1 && args[0] == "balances") {
    out.verb = args[0];
    return true;
  }
  if (args.size() < 2) return false;
  out.verb = args[0];
  out.id = args[1];
  auto amount = [&]() -> int64_t {
    return args.size() > 2 ? std::stoll(args[2]) : 0;
  };
  if (out.verb == "open" && args.size() == 3)
    out.cmd = bank::open_account{args[2]};
  else if (out.verb == "deposit" && args.size() >= 3)
    out.cmd = bank::deposit{amount()};
  else if (out.verb == "withdraw" && args.size() >= 3)
    out.cmd = bank::withdraw{amount()};
  else if (out.verb == "close" && args.size() == 2)
    out.cmd = bank::close_account{};
  else if ((out.verb != "show" && !is_query(out.verb)) || args.size() != 2)
    return false;
  if ((out.verb == "deposit" || out.verb == "withdraw") && args.size() == 4)
    out.command_id = args[3];
  return true;
}

nlohmann::json state_json(const std::string& id, const bank::account_state& s) {
  return {{"id", id},
          {"exists", s.exists},
          {"open", s.open},
          {"owner", s.owner},
          {"balance", s.balance}};
}

nlohmann::json row_json(const std::string& id, const bank::balance_row& r) {
  return {
      {"id", id}, {"owner", r.owner}, {"balance", r.balance}, {"open", r.open}};
}

// Waits (10 s at most) until the projection has handled every committed
// event, so that a query sees the commands of earlier runs.
bool caught_up(runtime::node& n, const caf::actor& projection) {
  caf::scoped_actor self{n.system()};
  bool done = false;
  self->request(projection, std::chrono::seconds{10},
                actors::caught_up_atom::value, n.journal().head_position())
      .receive([&](uint64_t) { done = true; },
               [&](caf::error& err) {
                 std::cerr << "mnemo-bank: " << runtime::describe(err) << "\n";
               });
  return done;
}

int query(runtime::node& n, const bank::balances_model& model,
          const parsed& p) {
  auto fail = [](const persistence::error& err) {
    std::cerr << "mnemo-bank: " << err.to_string() << "\n";
    return 1;
  };
  if (p.verb == "balances") {
    auto totals = model.totals(n.journal());
    if (!totals) return fail(totals.error());
    std::cout << nlohmann::json{{"accounts", totals->accounts},
                                {"total", totals->total}}
                     .dump()
              << "\n";
  } else if (p.verb == "balance") {
    auto row = model.balance(n.journal(), p.id);
    if (!row) return fail(row.error());
    if (!*row) {
      std::cerr << "mnemo-bank: no account '" << p.id << "'\n";
      return 1;
    }
    std::cout << row_json(p.id, **row).dump() << "\n";
  } else {
    auto rows = model.accounts_of(n.journal(), p.id);
    if (!rows) return fail(rows.error());
    for (auto& [id, row] : *rows) std::cout << row_json(id, row).dump() << "\n";
  }
  return 0;
}

int run(runtime::node& n, const parsed& p) {
  mnemo::actors::register_types<bank::account>(n.registry());
  bank::balances_model model{n.registry()};
  auto projection = actors::spawn_projection(
      n.system(), {&n.journal(), &n.completions(), n.event_bus()},
      model.projection());
  if (!projection) {
    std::cerr << "mnemo-bank: " << n.system().render(projection.error())
              << "\n";
    return 1;
  }
  n.track(*projection);
  if (is_query(p.verb)) {
    if (!caught_up(n, *projection)) {
      std::cerr << "mnemo-bank: the balances projection is not caught up "
                   "(stopped or paused?)\n";
      return 1;
    }
    return query(n, model, p);
  }
  actors::aggregate_context ctx{&n.journal(), &n.registry(), &n.completions(),
                                actors::aggregate_options::from(n.config()),
                                nullptr};
  auto stream = actors::stream_of<bank::account>(p.id);
  auto before = n.journal().highest_sequence(stream);
  auto acct =
      n.system().spawn<actors::aggregate_actor<bank::account>>(ctx, p.id);
  n.track(acct);
  caf::scoped_actor self{n.system()};
  int rc = 0;
  if (p.verb != "show") {
    self->request(acct, caf::infinite, actors::command_atom::value,
                  p.command_id, p.cmd)
        .receive([](bank::account_reply&) {},
                 [&](caf::error& err) {
                   std::cerr << "mnemo-bank: " << p.verb
                             << " rejected: " << n.system().render(err) << "\n";
                   rc = 1;
                 });
  }
  auto events = n.journal().read_stream(stream, before ? *before + 1 : 1,
                                        UINT64_MAX, UINT64_MAX);
  if (events)
    for (auto& env : *events) {
      auto payload = n.registry().payload_json(env);
      std::cout << nlohmann::json{{"event", env.type},
                                  {"sequence", env.sequence},
                                  {"position", env.position},
                                  {"payload", payload ? *payload : nullptr}}
                       .dump()
                << "\n";
    }
  self->request(acct, caf::infinite, caf::get_atom::value)
      .receive(
          [&](bank::account_state& s) {
            std::cout << state_json(p.id, s).dump() << "\n";
          },
          [&](caf::error& err) {
            std::cerr << "mnemo-bank: " << n.system().render(err) << "\n";
            rc = 1;
          });
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  runtime::node_config cfg;
  mnemo::runtime::add_error_category<bank::account_errc>(cfg);
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "mnemo-bank: " << cfg.render(err) << "\n" << usage;
    return 2;
  }
  if (cfg.cli_helptext_printed) {
    std::cout << usage;
    return 0;
  }
  parsed p;
  try {
    if (!parse_command(cfg.remainder, p)) {
      std::cerr << usage;
      return 2;
    }
  } catch (const std::exception&) {
    std::cerr << "mnemo-bank: AMOUNT must be an integer\n" << usage;
    return 2;
  }
  auto n = runtime::node::start(cfg);
  if (!n) {
    std::cerr << "mnemo-bank: " << runtime::describe(n.error()) << "\n";
    return 1;
  }
  return run(**n, p);
}
