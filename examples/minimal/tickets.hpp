#pragma once

// A minimal application on mnemo (docs/minimal-app.md): tickets that are
// opened, closed, reopened and linked (an aggregate), a count of open
// tickets (a projection), and a merge of one ticket into another (a
// process manager: close the first, link it to the second; if the link
// fails, reopen the first).

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mnemo/actors/aggregate.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/error_enum.hpp"
#include "mnemo/runtime/message.hpp"
#include "mnemo/sagas/saga.hpp"

namespace tickets {

MNEMO_ERROR_ENUM(ticket_errc, "tickets", none, unknown_ticket, wrong_state)

// -- the aggregate
// --------------------------------------------------------------

struct open_ticket {
  std::string title;
  MNEMO_MESSAGE(open_ticket, title)
};
struct close_ticket {
  MNEMO_EMPTY_MESSAGE(close_ticket)
};
struct reopen_ticket {
  MNEMO_EMPTY_MESSAGE(reopen_ticket)
};
struct link_ticket {
  std::string other;
  MNEMO_MESSAGE(link_ticket, other)
};

struct opened {
  std::string title;
  MNEMO_MESSAGE(opened, title)
};
struct closed {
  MNEMO_EMPTY_MESSAGE(closed)
};
struct reopened {
  MNEMO_EMPTY_MESSAGE(reopened)
};
struct linked {
  std::string other;
  MNEMO_MESSAGE(linked, other)
};

struct ticket_state {
  bool exists = false;
  bool is_open = false;
  std::string title;
  std::vector<std::string> links;
  MNEMO_MESSAGE(ticket_state, exists, is_open, title, links)

  // How each event changes the state.
  void apply(const opened& e) { *this = {true, true, e.title, {}}; }
  void apply(const closed&) { is_open = false; }
  void apply(const reopened&) { is_open = true; }
  void apply(const linked& e) { links.push_back(e.other); }
};

struct ticket {
  using state = ticket_state;
  using command =
      std::variant<open_ticket, close_ticket, reopen_ticket, link_ticket>;
  using event = std::variant<opened, closed, reopened, linked>;
  using reply = ticket_state;  // every command answers the state after it
  using effect = mnemo::actors::effect<ticket>;
  static constexpr const char* type_name = "ticket";
  // The stored names of the events (in the variant's order) and state.
  static constexpr const char* event_names[] = {
      "ticket.opened", "ticket.closed", "ticket.reopened", "ticket.linked"};
  static constexpr const char* state_name = "ticket.state";

  static reply reply_of(const state& s) { return s; }

  // One decide() per command.
  static effect decide(const state& s, const open_ticket& c) {
    if (s.exists)
      return effect::reject(ticket_errc::wrong_state, "the ticket exists");
    return effect::persist(opened{c.title});
  }
  static effect decide(const state& s, const close_ticket&) {
    if (auto no = refuse(s, false)) return *no;
    return effect::persist(closed{});
  }
  static effect decide(const state& s, const reopen_ticket&) {
    if (auto no = refuse(s, true)) return *no;
    return effect::persist(reopened{});
  }
  static effect decide(const state& s, const link_ticket& c) {
    if (!s.exists)
      return effect::reject(ticket_errc::unknown_ticket, "no such ticket");
    return effect::persist(linked{c.other});
  }

  // A close of a closed ticket or a reopen of an open one is refused.
  static std::optional<effect> refuse(const state& s, bool closed_wanted) {
    if (!s.exists)
      return effect::reject(ticket_errc::unknown_ticket, "no such ticket");
    if (s.is_open == closed_wanted)
      return effect::reject(
          ticket_errc::wrong_state,
          s.is_open ? "the ticket is open" : "the ticket is closed");
    return std::nullopt;
  }
};

// -- the projection: how many tickets are open
// ----------------------------------

/// Key "open" of table "tickets.counts", updated in the same transaction
/// as the projection's offset (exactly once).
inline mnemo::actors::projection_spec open_count() {
  namespace mp = mnemo::persistence;
  mnemo::actors::projection_spec spec;
  spec.name = "tickets.open_count";
  spec.filter.event_types = {"ticket.opened", "ticket.closed",
                             "ticket.reopened"};
  spec.apply = [](mp::write_txn& txn,
                  const mp::event_envelope& env) -> mp::error {
    auto now = mp::table_store::get_in(txn, "tickets.counts", "open");
    if (!now) return now.error();
    auto n = *now ? std::stoll(**now) : 0;
    n += env.type == "ticket.closed" ? -1 : 1;
    return mp::table_store::put_in(txn, "tickets.counts", "open",
                                   std::to_string(n));
  };
  spec.clear = [](mp::write_txn& txn) {
    auto cleared = mp::table_store::clear_in(txn, "tickets.counts");
    return cleared ? mp::error{} : cleared.error();
  };
  return spec;
}

// -- the process manager: merge one ticket into another
// -------------------------

struct merge_data {
  std::string from;
  std::string into;
  MNEMO_MESSAGE(merge_data, from, into)
};

struct merge {
  using data = merge_data;
  static constexpr const char* type_name = "merge";
};

/// Close `from`, then link it from `into`; if that fails for good,
/// `from` is reopened.
inline mnemo::sagas::definition<merge_data> merge_steps() {
  using mnemo::sagas::command;
  mnemo::sagas::step<merge_data> shut;
  shut.name = "close";
  shut.action = command<ticket, merge_data>(
      [](const merge_data& d) { return d.from; },
      [](const merge_data&) { return ticket::command{close_ticket{}}; });
  shut.compensation = command<ticket, merge_data>(
      [](const merge_data& d) { return d.from; },
      [](const merge_data&) { return ticket::command{reopen_ticket{}}; });
  mnemo::sagas::step<merge_data> point;
  point.name = "link";
  point.action = command<ticket, merge_data>(
      [](const merge_data& d) { return d.into; },
      [](const merge_data& d) { return ticket::command{link_ticket{d.from}}; });
  mnemo::sagas::definition<merge_data> def;
  def.steps = {shut, point};
  return def;
}

}  // namespace tickets
