#include "lmdb_util.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>

namespace mnemo::persistence {

error lmdb_error(int rc, std::string_view operation) {
  std::string text = std::string{operation} + " failed: " + mdb_strerror(rc);
  switch (rc) {
    case 0:
      return {};
    case MDB_MAP_FULL:
      return error{errc::storage_full,
                   text +
                       " (the map reached journal_config::max_map_size;"
                       " raise it)"};
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return error{errc::storage_full,
                   text +
                       " (the file system is full or the file size "
                       "limit was hit; free space and reopen the journal)"};
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return error{errc::format_mismatch,
                   text +
                       " (the file is not an LMDB environment of this "
                       "LMDB version)"};
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
      return error{errc::corrupt_record,
                   text + " (the data file is damaged; restore a backup)"};
    default:
      return error{errc::storage_error, std::move(text)};
  }
}

error lmdb_commit_error(int rc, std::string_view operation,
                        const std::string& directory) {
  auto err = lmdb_error(rc, operation);
  if (rc != EIO) return err;
  std::string why;
  struct statvfs fs {};
  if (::statvfs(directory.c_str(), &fs) == 0) {
    auto free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes < (uint64_t{1} << 20))
      why = "the file system has " + std::to_string(free_bytes) + " bytes free";
  }
  rlimit limit{};
  struct stat st {};
  if (why.empty() && ::getrlimit(RLIMIT_FSIZE, &limit) == 0 &&
      limit.rlim_cur != RLIM_INFINITY &&
      ::stat((directory + "/data.mdb").c_str(), &st) == 0 &&
      static_cast<uint64_t>(st.st_size) + (uint64_t{1} << 16) >=
          static_cast<uint64_t>(limit.rlim_cur))
    why = "data.mdb is " + std::to_string(st.st_size) +
          " bytes, at the file size limit (RLIMIT_FSIZE " +
          std::to_string(limit.rlim_cur) + " bytes)";
  if (why.empty()) return err;
  return error{errc::storage_full,
               err.message() + " (a short write: " + why +
                   "; free space or raise the limit and reopen the journal)"};
}

error check_name(std::string_view name, std::string_view what) {
  if (name.empty())
    return error{errc::invalid_argument, std::string{what} + " is empty"};
  if (name.size() > max_name_size)
    return error{errc::invalid_argument, std::string{what} + " is " +
                                             std::to_string(name.size()) +
                                             " bytes long; the limit is " +
                                             std::to_string(max_name_size)};
  if (name.find('\0') != std::string_view::npos)
    return error{errc::invalid_argument,
                 std::string{what} + " contains a NUL byte"};
  return {};
}

namespace detail {

error txn_state::check(int rc, std::string_view operation) {
  if (rc == 0) return {};
  if ((rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) && fatal_rc == 0)
    fatal_rc = rc;
  return lmdb_error(rc, operation);
}

}  // namespace detail

}  // namespace mnemo::persistence
