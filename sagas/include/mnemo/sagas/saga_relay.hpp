#pragma once

// The actor that carries the rows of a saga table (the outbox of event
// started sagas, the inbox of events for sagas) to the sagas: each row
// becomes a message to the saga registry, and the row is deleted once the
// saga has answered without error. Rows of one group (one saga) travel one
// at a time, in key order. A crash anywhere leaves the row, which is sent
// again: the sagas recognise repeats.

#include <chrono>
#include <functional>
#include <map>
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
  /// The smallest key after every row of this saga: the saga's rows are
  /// the keys in [saga_id, group_end), contiguous in key order.
  std::string group_end;
};

/// Turns a row into a message, or nothing if the row is unreadable (it is
/// left for an operator).
using relay_decode = std::function<std::optional<relay_item>(
    std::string_view key, std::string_view value)>;

/// `(relay_scan_atom, bool periodic)`: a poll (true) or the next step of a
/// scan (false).
using relay_scan_atom = caf::atom_constant<caf::atom("mn_rscan")>;
using relay_done_atom = caf::atom_constant<caf::atom("mn_rdone")>;

/// Relays `table` to `registry`; `Reply` is the type the sagas answer.
///
/// A scan walks the table in key order, at most `sagas_per_step` sagas per
/// step, and sends the first row of every saga that has none in flight. It
/// jumps over the other rows of a saga (a saga that cannot judge its events
/// yet may hold many), so that sagas with held rows cost one look each and
/// never starve the others; a scan that stopped at the limit goes on from
/// there in its next step, after the answers that came meanwhile. Once a
/// saga has answered and its row is deleted, its next row is sent at once.
template <class Reply>
class saga_relay : public caf::event_based_actor {
 public:
  /// Sagas looked at per scan step.
  static constexpr size_t sagas_per_step = 1000;

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
        [this](runtime::head_atom, uint64_t) { want_scan(); },
        [this](relay_scan_atom, bool periodic) {
          if (!periodic) return scan_step();
          delayed_send(this, poll_, relay_scan_atom::value, true);
          want_scan();
        },
        [this](relay_done_atom, const std::string& saga_id) {
          on_done(saga_id);
        },
    };
  }

 private:
  // Many heads and polls arrive together: one scan serves them all. A
  // request during a scan may be for a row behind its cursor: scan again
  // from the start once this scan is through.
  void want_scan() {
    if (!cursor_.empty()) again_ = true;
    queue_step();
  }

  void queue_step() {
    if (step_queued_) return;
    step_queued_ = true;
    send(this, relay_scan_atom::value, false);
  }

  void scan_step() {
    step_queued_ = false;
    std::vector<std::pair<std::string, relay_item>> found;
    std::string resume;  // where the next step starts; empty: scan is over
    auto err = journal_->read([&](persistence::read_txn& txn) {
      found.clear();
      resume.clear();
      std::set<std::string> seen;
      std::string from = cursor_;
      size_t sagas = 0;
      for (;;) {
        std::string jump;
        auto n = persistence::table_store::scan_in(
            txn, table_, from, "", persistence::table_store::unlimited,
            [&](std::string_view k, std::string_view v) {
              auto item = decode_(k, v);
              if (!item) return true;  // unreadable: left for an operator
              if (seen.count(item->saga_id) > 0) {
                // A later row of a saga looked at: skip the rest of them.
                if (std::string_view{item->group_end} > k) {
                  jump = std::move(item->group_end);
                  return false;
                }
                return true;
              }
              if (sagas == sagas_per_step) {
                resume = std::string{k};  // the first row of a saga
                return false;
              }
              ++sagas;
              seen.insert(item->saga_id);
              // Only the first row of each saga, and none of a busy one.
              if (in_flight_.count(item->saga_id) == 0)
                found.emplace_back(std::string{k}, std::move(*item));
              return true;
            });
        if (!n) return n.error();
        if (jump.empty()) return persistence::error{};
        from = std::move(jump);
      }
    });
    // After a read error the next poll scans again from the start.
    cursor_ = err ? std::string{} : std::move(resume);
    for (auto& [key, item] : found) relay(std::move(key), std::move(item));
    if (!cursor_.empty()) {
      queue_step();
    } else if (again_) {
      again_ = false;
      queue_step();
    }
  }

  void relay(std::string key, relay_item item) {
    auto saga_id = item.saga_id;
    in_flight_[saga_id] = std::move(item.group_end);
    // A saga that stopped without answering must not block its rows. One
    // that holds the row (it cannot judge the event yet) is asked again
    // after the timeout; the newer request takes over.
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

  // The saga's row is deleted (or its deletion failed: then the row is
  // sent again, and the saga recognises it): send its next row at once.
  void on_done(const std::string& saga_id) {
    auto i = in_flight_.find(saga_id);
    if (i == in_flight_.end()) return;
    auto end = std::move(i->second);
    in_flight_.erase(i);
    std::optional<std::pair<std::string, relay_item>> next;
    auto err = journal_->read([&](persistence::read_txn& txn) {
      auto n = persistence::table_store::scan_in(
          txn, table_, saga_id, end, 1,
          [&](std::string_view k, std::string_view v) {
            auto item = decode_(k, v);
            if (item && item->saga_id == saga_id)
              next.emplace(std::string{k}, std::move(*item));
            return false;
          });
      return n ? persistence::error{} : n.error();
    });
    if (!err && next) relay(std::move(next->first), std::move(next->second));
  }

  persistence::journal* journal_;
  runtime::completion_sink* sink_;
  caf::actor registry_;
  caf::actor bus_;
  std::chrono::milliseconds poll_;
  std::string table_;
  relay_decode decode_;
  /// Sagas with a request out, and where their rows end.
  std::map<std::string, std::string> in_flight_;
  /// Where the scan in progress goes on; empty: no scan in progress.
  std::string cursor_;
  bool step_queued_ = false;
  /// Scan again once the scan in progress is through.
  bool again_ = false;
};

}  // namespace mnemo::sagas::detail
