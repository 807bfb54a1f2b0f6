#pragma once

// A move of money between two wallets as a saga, for the library's tests:
// withdraw from `from`, deposit to `to`; if the deposit fails for good
// (unknown or closed wallet), refund `from`. It behaves as the bank
// example's transfer (examples/bank/transfer.hpp) does: the same steps,
// retry policies and compensation.

#include <chrono>
#include <cstdint>
#include <string>

#include "mnemo/sagas/saga.hpp"
#include "wallet.hpp"

namespace wallet_model {

struct wallet_transfer_data {
  std::string from;
  std::string to;
  int64_t amount = 0;
  MNEMO_MESSAGE(wallet_transfer_data, from, to, amount)
};

struct wallet_transfer {
  using data = wallet_transfer_data;
  static constexpr const char* type_name = "move";

  static mnemo::sagas::definition<data> define() {
    using mnemo::sagas::command;
    auto from = [](const data& d) { return d.from; };
    auto to = [](const data& d) { return d.to; };
    auto take = [](const data& d) {
      return wallet::command{withdraw{d.amount}};
    };
    auto give = [](const data& d) {
      return wallet::command{deposit{d.amount}};
    };
    mnemo::sagas::definition<data> def;
    mnemo::sagas::step<data> debit;
    debit.name = "withdraw";
    debit.action = command<wallet, data>(from, take);
    debit.compensation = command<wallet, data>(from, give);
    mnemo::sagas::step<data> credit;
    credit.name = "deposit";
    credit.action = command<wallet, data>(to, give);
    // As the bank's transfer: about 15 s of retries (12 attempts, backoff
    // capped at 2 s) before a step is given up on and compensated.
    for (auto* s : {&debit, &credit}) {
      s->retry.max_attempts = 12;
      s->retry.backoff.max_backoff = std::chrono::seconds{2};
    }
    def.steps = {debit, credit};
    return def;
  }
};

}  // namespace wallet_model
