// Commit listeners (`journal::subscribe`): told of the new head position by
// the writer thread after each commit that wrote events, before any append
// of that commit is answered.
//
// Owns, of journal::impl: listeners (commit_listeners in journal_impl.hpp).

#include "mnemo/persistence/journal.hpp"

#include <mutex>

#include "journal_impl.hpp"

namespace mnemo::persistence {

uint64_t journal::subscribe(commit_listener fn) {
  std::lock_guard<std::mutex> guard{impl_->listeners.mtx};
  auto token = impl_->listeners.next_token++;
  impl_->listeners.by_token.emplace(token, std::move(fn));
  return token;
}

void journal::unsubscribe(uint64_t token) {
  std::lock_guard<std::mutex> guard{impl_->listeners.mtx};
  impl_->listeners.by_token.erase(token);
}

void journal::impl::notify(uint64_t new_head) {
  std::lock_guard<std::mutex> guard{listeners.mtx};
  for (auto& [token, fn] : listeners.by_token) fn(new_head);
}

}  // namespace mnemo::persistence
