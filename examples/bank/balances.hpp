#pragma once

// The bank's read side: a read model of balances per account, an index by
// owner and running totals, kept by an exactly-once projection over the
// account events. Queries read only this model, never the journal.

#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "account.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/read_model.hpp"

namespace bank {

struct balance_row {
  std::string owner;
  int64_t balance = 0;
  bool open = true;
  MSGPACK_DEFINE_MAP(owner, balance, open)
};

struct totals_row {
  uint64_t accounts = 0;
  int64_t total = 0;
  MSGPACK_DEFINE_MAP(accounts, total)
};

/// The balances read model and the projection that maintains it.
class balances_model {
 public:
  /// Projection name (its offset and dead letters are stored under it).
  static constexpr const char* projection_name = "bank.balances";
  /// Name of the cluster-wide model: its projections are
  /// `bank.cluster_balances@local` and `bank.cluster_balances@<member>`.
  static constexpr const char* cluster_name = "bank.cluster_balances";

  /// The model of this node's accounts (tables `bank.balances` and
  /// `bank.totals`), or with `cluster_wide` the model of every member's
  /// accounts (`bank.cluster_balances`, `bank.cluster_totals`).
  explicit balances_model(const mnemo::persistence::event_registry& types,
                          bool cluster_wide = false)
      : types_(&types),
        name_(cluster_wide ? cluster_name : projection_name),
        accounts_(cluster_wide ? "bank.cluster_balances" : "bank.balances"),
        totals_(cluster_wide ? "bank.cluster_totals" : "bank.totals") {
    by_owner_ = std::make_shared<index_type>(
        accounts_.add_index<std::string>("owner", [](const balance_row& row) {
          return std::optional<std::string>{row.owner};
        }));
  }

  /// The exactly-once projection over account streams. The handlers hold a
  /// copy of the model; the event registry must outlive the projection.
  mnemo::actors::projection_spec projection() const {
    mnemo::actors::projection_spec spec;
    spec.name = name_;
    spec.filter.stream_prefix = "account-";
    // Grouped: the totals row, which every deposit changes, is written
    // once per write (a group commit's events) instead of once per event.
    spec.apply_group =
        [model = *this](
            mnemo::persistence::write_txn& txn,
            const std::vector<mnemo::persistence::event_envelope>& events) {
          return model.apply(txn, events);
        };
    spec.clear = [model = *this](mnemo::persistence::write_txn& txn) {
      auto a = model.accounts_.clear(txn);
      if (!a) return a.error();
      auto t = model.totals_.clear(txn);
      return t ? mnemo::persistence::error{} : t.error();
    };
    return spec;
  }

  /// Returns the row of account `id`, if the projection has seen it.
  mnemo::persistence::expected<std::optional<balance_row>> balance(
      const mnemo::persistence::journal& j, const std::string& id) const {
    std::optional<balance_row> result;
    auto err = j.read([&](mnemo::persistence::read_txn& txn) {
      auto row = accounts_.get(txn, id);
      if (!row) return row.error();
      result = std::move(*row);
      return mnemo::persistence::error{};
    });
    if (err) return err;
    return result;
  }

  /// Returns the accounts of `owner` with their rows, by account id.
  mnemo::persistence::expected<std::vector<std::pair<std::string, balance_row>>>
  accounts_of(const mnemo::persistence::journal& j,
              const std::string& owner) const {
    std::vector<std::pair<std::string, balance_row>> result;
    auto err = j.read([&](mnemo::persistence::read_txn& txn) {
      auto rows = by_owner_->lookup(txn, owner);
      if (!rows) return rows.error();
      result = std::move(*rows);
      return mnemo::persistence::error{};
    });
    if (err) return err;
    return result;
  }

  /// Returns the number of accounts and the sum of all balances.
  mnemo::persistence::expected<totals_row> totals(
      const mnemo::persistence::journal& j) const {
    totals_row result;
    auto err = j.read([&](mnemo::persistence::read_txn& txn) {
      auto row = totals_.get(txn, "all");
      if (!row) return row.error();
      if (*row) result = **row;
      return mnemo::persistence::error{};
    });
    if (err) return err;
    return result;
  }

 private:
  using index_type =
      mnemo::persistence::secondary_index<std::string, std::string,
                                          balance_row>;

  // Applies the events to their accounts' rows, then their sum to the
  // totals row.
  mnemo::persistence::error apply(
      mnemo::persistence::write_txn& txn,
      const std::vector<mnemo::persistence::event_envelope>& events) const {
    mnemo::actors::variant_codec<account::event> codec{*types_};
    int64_t delta = 0;
    uint64_t opened = 0;
    for (auto& env : events) {
      auto ev = codec.decode(env);
      if (!ev) return ev.error();
      auto id = env.stream_id.substr(std::string{"account-"}.size());
      auto err =
          accounts_.update(txn, id, [&](std::optional<balance_row>& row) {
            if (!row) row.emplace();
            std::visit(
                [&](const auto& e) {
                  using T = std::decay_t<decltype(e)>;
                  if constexpr (std::is_same_v<T, account_opened>) {
                    row->owner = e.owner;
                    opened += 1;
                  } else if constexpr (std::is_same_v<T, money_deposited>) {
                    row->balance += e.amount;
                    delta += e.amount;
                  } else if constexpr (std::is_same_v<T, money_withdrawn>) {
                    row->balance -= e.amount;
                    delta -= e.amount;
                  } else {
                    row->open = false;
                  }
                },
                *ev);
          });
      if (err) return err;
    }
    if (delta == 0 && opened == 0) return {};
    return totals_.update(txn, "all", [&](std::optional<totals_row>& sums) {
      if (!sums) sums.emplace();
      sums->accounts += opened;
      sums->total += delta;
    });
  }

  const mnemo::persistence::event_registry* types_;
  std::string name_;
  mnemo::persistence::table<std::string, balance_row> accounts_;
  mnemo::persistence::table<std::string, totals_row> totals_;
  std::shared_ptr<index_type> by_owner_;
};

}  // namespace bank
