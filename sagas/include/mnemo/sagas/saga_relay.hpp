#pragma once

// The actor that carries the rows of a saga table (the outbox of event
// started sagas, the inbox of events for running sagas) to the sagas:
// each row becomes a message to the saga registry, and the row is deleted
// once the saga has answered without error. Rows of one group (one saga)
// travel one at a time, in key order. A crash anywhere leaves the row,
// which is sent again: the sagas recognise repeats.

#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/event_bus.hpp"

namespace mnemo::sagas::detail {

/// A row of a relayed table as a message for the saga registry.
struct relay_item {
  /// The saga the message goes to (one in flight per saga).
  std::string saga_id;
  caf::message message;
};

/// Turns a row into a message, or nothing if the row is unreadable (it is
/// left for an operator).
using relay_decode = std::function<std::optional<relay_item>(
    std::string_view key, std::string_view value)>;

using relay_scan_atom = caf::atom_constant<caf::atom("mn_rscan")>;
using relay_done_atom = caf::atom_constant<caf::atom("mn_rdone")>;

/// Relays `table` to `registry`; `Reply` is the type the sagas answer.
template <class Reply>
class saga_relay : public caf::event_based_actor {
 public:
  saga_relay(caf::actor_config& cfg, persistence::journal* j,
             runtime::completion_sink* sink, caf::actor registry,
             caf::actor bus, std::chrono::milliseconds poll, std::string table,
             relay_decode decode)
      : caf::event_based_actor(cfg),
        journal_(j),
        sink_(sink),
        registry_(std::move(registry)),
        bus_(std::move(bus)),
        poll_(poll),
        table_(std::move(table)),
        decode_(std::move(decode)) {}

  const char* name() const override { return "mnemo.saga_relay"; }

  caf::behavior make_behavior() override {
    if (bus_) request(bus_, caf::infinite, runtime::subscribe_atom::value);
    send(this, relay_scan_atom::value, true);
    return {
        [this](runtime::head_atom, uint64_t) { queue_scan(); },
        [this](relay_scan_atom, bool periodic) {
          if (periodic)
            delayed_send(this, poll_, relay_scan_atom::value, true);
          else
            scan_queued_ = false;
          scan();
        },
        [this](relay_done_atom, const std::string& saga_id) {
          in_flight_.erase(saga_id);
          queue_scan();
        },
    };
  }

 private:
  // Many heads and answers arrive together: one scan serves them all.
  void queue_scan() {
    if (scan_queued_) return;
    scan_queued_ = true;
    send(this, relay_scan_atom::value, false);
  }

  void scan() {
    struct row {
      std::string key;
      relay_item item;
    };
    std::vector<row> found;
    std::set<std::string> seen;
    journal_->read([&](persistence::read_txn& txn) {
      auto n = persistence::table_store::scan_in(
          txn, table_, "", "", 1000,
          [&](std::string_view k, std::string_view v) {
            auto item = decode_(k, v);
            if (!item) return true;
            // Only the first row of each saga, and none of a busy one.
            if (!seen.insert(item->saga_id).second) return true;
            if (in_flight_.count(item->saga_id) > 0) return true;
            found.push_back(row{std::string{k}, std::move(*item)});
            return true;
          });
      return n ? persistence::error{} : n.error();
    });
    for (auto& r : found) relay(std::move(r.key), std::move(r.item));
  }

  void relay(std::string key, relay_item item) {
    auto saga_id = item.saga_id;
    in_flight_.insert(saga_id);
    // A saga that stopped without answering must not block its rows.
    request(registry_, std::chrono::seconds{30}, runtime::route_atom::value,
            saga_id, std::move(item.message))
        .then([this, key, saga_id](Reply&) { forget(key, saga_id); },
              [this, saga_id](caf::error&) {
                // Left in the table: the next scan sends it again.
                in_flight_.erase(saga_id);
              });
  }

  // The saga has recorded the row's effect: delete the row.
  void forget(const std::string& key, const std::string& saga_id) {
    auto me = caf::actor_cast<caf::actor>(this);
    auto* sink = sink_;
    sink->expect();
    journal_->write(
        [table = table_, key](persistence::write_txn& txn) {
          auto erased = persistence::table_store::erase_in(txn, table, key);
          return erased ? persistence::error{} : erased.error();
        },
        [sink, me, saga_id](persistence::error) {
          sink->post([me, saga_id] {
            caf::anon_send(me, relay_done_atom::value, saga_id);
          });
        });
  }

  persistence::journal* journal_;
  runtime::completion_sink* sink_;
  caf::actor registry_;
  caf::actor bus_;
  std::chrono::milliseconds poll_;
  std::string table_;
  relay_decode decode_;
  std::set<std::string> in_flight_;
  bool scan_queued_ = false;
};

}  // namespace mnemo::sagas::detail
