// Dead-letter management of the projection actor: list, retry, drop.

#include "projection_actor.hpp"

namespace mnemo::actors::detail {

caf::result<std::vector<dead_letter_info>> projection_actor::dead_letters(
    uint64_t from, uint64_t max) {
  auto list = ctx_.journal->dead_letters().list(spec_.name, from, max);
  if (!list) return runtime::to_caf_error(list.error());
  std::vector<dead_letter_info> result;
  for (auto& d : *list)
    result.push_back(dead_letter_info{d.position, d.stream_id, d.sequence,
                                      d.event_type, d.error, d.attempts,
                                      d.parked_at_ms});
  return result;
}

caf::result<caf::unit_t> projection_actor::retry_dead(uint64_t position) {
  auto letter = ctx_.journal->dead_letters().get(spec_.name, position);
  if (!letter) return runtime::to_caf_error(letter.error());
  if (!*letter)
    return runtime::make_error(runtime::errc::not_found,
                               "projection '" + spec_.name +
                                   "' has no dead letter at position " +
                                   std::to_string(position));
  auto rp = make_response_promise<caf::unit_t>();
  // The event lives in the source's journal (another member's, maybe).
  source_->read_event(
      position, [this, rp, d = **letter, position](
                    caf::expected<std::optional<persistence::event_envelope>>
                        event) mutable {
        if (!event) {
          rp.deliver(std::move(event.error()));
          return;
        }
        if (!*event) {
          rp.deliver(runtime::make_error(
              runtime::errc::not_found,
              "the event at position " + std::to_string(position) +
                  " is no longer in the journal; drop the dead letter"));
          return;
        }
        when_idle([this, env = std::move(**event), d, rp]() mutable {
          retry_parked(std::move(env), std::move(d), rp);
        });
      });
  return rp;
}

void projection_actor::retry_parked(
    persistence::event_envelope env, persistence::dead_letter d,
    caf::typed_response_promise<caf::unit_t> rp) {
  auto text = handling_->retry_before(env);
  if (!text.empty()) return repark(std::move(d), std::move(text), rp);
  auto failed = std::make_shared<std::string>();
  write(
      [handling = handling_, name = spec_.name, env,
       failed](persistence::write_txn& txn) -> persistence::error {
        failed->clear();  // a write the journal runs again starts afresh
        if (auto err = handling->retry_in(txn, env)) {
          *failed = err.message();
          return err;
        }
        auto removed =
            persistence::dead_letter_store::remove_in(txn, name, env.position);
        return removed ? persistence::error{} : removed.error();
      },
      [this, d, failed, rp](write_outcome out) mutable {
        if (!failed->empty()) return repark(std::move(d), *failed, rp);
        if (out.err)
          rp.deliver(runtime::to_caf_error(out.err));
        else
          rp.deliver(caf::unit);
      });
}

// Stores one more failed attempt of a dead letter and answers the error.
void projection_actor::repark(persistence::dead_letter d, std::string text,
                              caf::typed_response_promise<caf::unit_t> rp) {
  d.attempts += 1;
  d.error = text;
  d.parked_at_ms = now_ms();
  auto err = runtime::make_error(runtime::errc::handler_failed,
                                 "projection '" + spec_.name +
                                     "' failed again at position " +
                                     std::to_string(d.position) + ": " + text);
  write(
      [d](persistence::write_txn& txn) {
        return persistence::dead_letter_store::park_in(txn, d);
      },
      [rp, err](write_outcome) mutable { rp.deliver(err); });
}

caf::result<bool> projection_actor::drop_dead(uint64_t position) {
  auto removed = ctx_.journal->dead_letters().remove(spec_.name, position);
  if (!removed) return runtime::to_caf_error(removed.error());
  return *removed;
}

}  // namespace mnemo::actors::detail
