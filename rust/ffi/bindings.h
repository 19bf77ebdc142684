/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel interfaces oxdax needs beyond kernel::bindings: bindgen input only
 * (see scripts/module-bindgen). What is generated is chosen by
 * bindgen_parameters beside this file.
 */
#include <linux/badblocks.h>
#include <linux/blkdev.h>
#include <linux/dax.h>
#include <linux/fs_context.h>
#include <linux/iomap.h>
#include <linux/libnvdimm.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/nd.h>
#include <linux/pfn_t.h>
#include <linux/xarray.h>

#include "helpers.h"
