#pragma once

// A money transfer as a saga: withdraw from `from`, deposit to `to`; if the
// deposit fails for good (unknown or closed account), refund `from`.

#include <string>

#include "account.hpp"
#include "mnemo/sagas/saga.hpp"

namespace bank {

struct transfer_data {
  std::string from;
  std::string to;
  int64_t amount = 0;
  MNEMO_MESSAGE(transfer_data, from, to, amount)
};

struct transfer {
  using data = transfer_data;
  static constexpr const char* type_name = "transfer";

  static mnemo::sagas::definition<data> define() {
    using mnemo::sagas::command;
    auto from = [](const data& d) { return d.from; };
    auto to = [](const data& d) { return d.to; };
    auto take = [](const data& d) {
      return account::command{withdraw{d.amount}};
    };
    auto give = [](const data& d) {
      return account::command{deposit{d.amount}};
    };
    mnemo::sagas::definition<data> def;
    mnemo::sagas::step<data> debit;
    debit.name = "withdraw";
    debit.action = command<account, data>(from, take);
    debit.compensation = command<account, data>(from, give);
    mnemo::sagas::step<data> credit;
    credit.name = "deposit";
    credit.action = command<account, data>(to, give);
    // In a cluster an account's owner may be away for a while (restart,
    // cut link): keep retrying for about 15 s (12 attempts, backoff capped
    // at 2 s) before giving up, since a step given up on is compensated.
    for (auto* s : {&debit, &credit}) {
      s->retry.max_attempts = 12;
      s->retry.backoff.max_backoff = std::chrono::seconds{2};
    }
    def.steps = {debit, credit};
    return def;
  }
};

}  // namespace bank
