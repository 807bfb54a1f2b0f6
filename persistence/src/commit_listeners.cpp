// Commit listeners (`journal::subscribe`): told of the new head position by
// the writer thread after each commit that wrote events, before any append
// of that commit is answered.
//
// Owns, of journal::impl: listeners_mtx, listeners, next_token.

#include "mnemo/persistence/journal.hpp"

#include <mutex>

#include "journal_impl.hpp"

namespace mnemo::persistence {

uint64_t journal::subscribe(commit_listener fn) {
  std::lock_guard<std::mutex> guard{impl_->listeners_mtx};
  auto token = impl_->next_token++;
  impl_->listeners.emplace(token, std::move(fn));
  return token;
}

void journal::unsubscribe(uint64_t token) {
  std::lock_guard<std::mutex> guard{impl_->listeners_mtx};
  impl_->listeners.erase(token);
}

void journal::impl::notify(uint64_t new_head) {
  std::lock_guard<std::mutex> guard{listeners_mtx};
  for (auto& [token, fn] : listeners) fn(new_head);
}

}  // namespace mnemo::persistence
