/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel interfaces oxdax needs beyond kernel::bindings: bindgen input only
 * (see scripts/module-bindgen). What is generated is chosen by
 * bindgen_parameters beside this file.
 */
#include <linux/badblocks.h>
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/dax.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/seq_file.h>
#include <linux/statfs.h>
#include <linux/uio.h>
#include <linux/iomap.h>
#include <linux/libnvdimm.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/nd.h>
#include <linux/pagemap.h>
#include <linux/pfn_t.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/huge_mm.h>
#include <linux/writeback.h>
#include <linux/xarray.h>

/*
 * libnvdimm exports functions (nvdimm_namespace_common_probe(),
 * nvdimm_clear_poison(), ...) whose prototypes live in its private header:
 * take them from the matching kernel source rather than retype them.
 */
#include <../drivers/nvdimm/nd.h>

#include "helpers.h"

/*
 * Constants bindgen cannot evaluate (casts in macros). Generated as
 * OXDAX_CONST_X and renamed to X by scripts/module-bindgen, as the kernel
 * does with RUST_CONST_HELPER_.
 */
const blk_features_t OXDAX_CONST_BLK_FEAT_WRITE_CACHE = BLK_FEAT_WRITE_CACHE;
const blk_features_t OXDAX_CONST_BLK_FEAT_FUA = BLK_FEAT_FUA;
const blk_features_t OXDAX_CONST_BLK_FEAT_DAX = BLK_FEAT_DAX;
const blk_features_t OXDAX_CONST_BLK_FEAT_SYNCHRONOUS = BLK_FEAT_SYNCHRONOUS;
const blk_status_t OXDAX_CONST_BLK_STS_OK = BLK_STS_OK;
const blk_status_t OXDAX_CONST_BLK_STS_NOTSUPP = BLK_STS_NOTSUPP;
const blk_status_t OXDAX_CONST_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_opf_t OXDAX_CONST_REQ_PREFLUSH = REQ_PREFLUSH;
const blk_opf_t OXDAX_CONST_REQ_FUA = REQ_FUA;
const unsigned long OXDAX_CONST_SB_RDONLY = SB_RDONLY;
const unsigned long OXDAX_CONST_SB_NOSEC = SB_NOSEC;
const unsigned long OXDAX_CONST_SB_POSIXACL = SB_POSIXACL;
const loff_t OXDAX_CONST_MAX_LFS_FILESIZE = MAX_LFS_FILESIZE;
const int OXDAX_CONST_MF_MEM_PRE_REMOVE = MF_MEM_PRE_REMOVE;
const int OXDAX_CONST_S_ATIME = S_ATIME;
const int OXDAX_CONST_S_MTIME = S_MTIME;
const int OXDAX_CONST_S_CTIME = S_CTIME;
const int OXDAX_CONST_EHWPOISON = EHWPOISON;
const fop_flags_t OXDAX_CONST_FOP_MMAP_SYNC = FOP_MMAP_SYNC;
