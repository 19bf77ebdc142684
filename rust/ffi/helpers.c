// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for oxdax: only what Rust cannot express (static inline
 * functions, macros). Keep each one tiny; logic belongs in Rust.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/dax.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/libnvdimm.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/device.h>
#include <linux/kstrtox.h>
#include <linux/ioport.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/set_memory.h>
#include <linux/moduleparam.h>
#include <linux/nd.h>
#include <linux/pagemap.h>
#include <linux/pfn_t.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "helpers.h"

MODULE_VERSION(OXDAX_VERSION);

/* Runs at insmod time, before the Rust module's init. */
static int fault_engine_set(const char *val, const struct kernel_param *kp)
{
	return oxdax_param_fault_engine_set(val);
}

static int fault_engine_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", oxdax_param_fault_engine_name());
}

static const struct kernel_param_ops fault_engine_ops = {
	.set = fault_engine_set,
	.get = fault_engine_get,
};
module_param_cb(fault_engine, &fault_engine_ops, NULL, 0444);
MODULE_PARM_DESC(fault_engine,
		 "Default page-fault engine for oxdax mounts: oxdax (the module's own, default) or iomap (the kernel's dax_iomap_fault)");

/* nd_driver_register() is a macro supplying THIS_MODULE and the name. */
int oxdax_nd_driver_register(struct nd_device_driver *drv)
{
	return nd_driver_register(drv);
}

void oxdax_nd_driver_unregister(struct nd_device_driver *drv)
{
	driver_unregister(&drv->drv);
}

struct nd_namespace_io *oxdax_to_nd_namespace_io(struct nd_namespace_common *ndns)
{
	return to_nd_namespace_io(&ndns->dev);
}

void *oxdax_dev_get_drvdata(const struct device *dev)
{
	return dev_get_drvdata(dev);
}

void oxdax_dev_set_drvdata(struct device *dev, void *data)
{
	dev_set_drvdata(dev, data);
}

const char *oxdax_dev_name(const struct device *dev)
{
	return dev_name(dev);
}

struct resource *oxdax_request_mem_region(resource_size_t start, resource_size_t n,
					  const char *name)
{
	return request_mem_region(start, n, name);
}

void oxdax_release_mem_region(resource_size_t start, resource_size_t n)
{
	release_mem_region(start, n);
}

/* blk_alloc_disk() is a macro that gives each caller its own lockdep key. */
struct gendisk *oxdax_blk_alloc_disk(struct queue_limits *lim, int node)
{
	return blk_alloc_disk(lim, node);
}

/* One step of bio_for_each_segment(); *sector is where the segment starts. */
bool oxdax_bio_next_segment(struct bio *bio, struct bvec_iter *iter,
			    struct bio_vec *bv, sector_t *sector)
{
	if (!iter->bi_size)
		return false;
	*bv = bio_iter_iovec(bio, *iter);
	*sector = iter->bi_sector;
	bio_advance_iter_single(bio, iter, bv->bv_len);
	return true;
}

unsigned int oxdax_bio_op(const struct bio *bio)
{
	return bio_op(bio);
}

/* I/O accounting as pmem does it: only when the queue asks for it. */
unsigned long oxdax_bio_start_io_acct(struct bio *bio)
{
	if (!blk_queue_io_stat(bio->bi_bdev->bd_disk->queue))
		return 0;
	return bio_start_io_acct(bio);
}

void oxdax_bio_end_io_acct(struct bio *bio, unsigned long start)
{
	if (start)
		bio_end_io_acct(bio, start);
}

void oxdax_memcpy_flushcache(void *dst, const void *src, size_t n)
{
	memcpy_flushcache(dst, src, n);
}

/* cond_resched() is a macro (might_resched check, then _cond_resched). */
void oxdax_cond_resched(void)
{
	cond_resched();
}

/* Freeze protection for work the filesystem starts itself (compaction). */
bool oxdax_sb_start_write_trylock(struct super_block *sb)
{
	return sb_start_write_trylock(sb);
}

void oxdax_sb_end_write(struct super_block *sb)
{
	sb_end_write(sb);
}

u64 oxdax_phys_to_pfn_t(phys_addr_t addr, u64 flags)
{
	return phys_to_pfn_t(addr, flags).val;
}

/*
 * After poison is cleared: drop the pages' HWPoison flag and restore their
 * direct mapping (as pmem_mkpage_present() does; the pages are ZONE_DEVICE,
 * in the linear map).
 */
void oxdax_pmem_mkpage_present(unsigned long pfn, unsigned long nr_pages)
{
	unsigned long end = pfn + nr_pages;

	for (; pfn < end; pfn++) {
		if (TestClearPageHWPoison(pfn_to_page(pfn)))
			clear_mce_nospec(pfn);
	}
}

bool oxdax_any_page_hwpoisoned(unsigned long pfn, unsigned long nr_pages)
{
	unsigned long end = pfn + nr_pages;

	for (; pfn < end; pfn++) {
		if (PageHWPoison(pfn_to_page(pfn)))
			return true;
	}
	return false;
}

/*
 * /sys/block/oxpmemN/dax/write_cache, as pmem has it: whether the DAX core
 * writes back CPU caches for persistence. Attribute tables are macros; the
 * DAX device comes from the disk's operations (struct oxdax_disk_ops). sysfs
 * removes the attribute, waiting for running show/store, before the disk
 * and the DAX device go.
 */
static struct dax_device *oxdax_disk_dax(struct gendisk *disk)
{
	const struct oxdax_disk_ops *ops =
		container_of(disk->fops, struct oxdax_disk_ops, table);

	return ops->dax_of(disk->private_data);
}

static ssize_t write_cache_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct dax_device *dax = oxdax_disk_dax(dev_to_disk(dev));

	return sysfs_emit(buf, "%d\n", dax && dax_write_cache_enabled(dax));
}

static ssize_t write_cache_store(struct device *dev, struct device_attribute *attr,
				 const char *buf, size_t len)
{
	struct dax_device *dax = oxdax_disk_dax(dev_to_disk(dev));
	bool write_cache;
	int rc = kstrtobool(buf, &write_cache);

	if (rc)
		return rc;
	if (!dax)
		return -ENXIO;
	dax_write_cache(dax, write_cache);
	return len;
}
static DEVICE_ATTR_RW(write_cache);

static struct attribute *oxdax_dax_attributes[] = {
	&dev_attr_write_cache.attr,
	NULL,
};

static const struct attribute_group oxdax_dax_attribute_group = {
	.name = "dax",
	.attrs = oxdax_dax_attributes,
};

const struct attribute_group *oxdax_pmem_attribute_groups[] = {
	&oxdax_dax_attribute_group,
	NULL,
};

/* The disk's "badblocks" sysfs node, to notify pollers of list changes. */
struct kernfs_node *oxdax_disk_badblocks_dirent(struct gendisk *disk)
{
	return sysfs_get_dirent(disk_to_dev(disk)->kobj.sd, "badblocks");
}

/*
 * Filesystem helpers. kmem_cache_create() is a _Generic macro; the inode
 * cache is reclaimable and accounted like every filesystem's.
 */
struct kmem_cache *oxdax_kmem_cache_create(const char *name, unsigned int size,
					   void (*ctor)(void *))
{
	return kmem_cache_create(name, size, 0, SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT, ctor);
}

void *oxdax_alloc_inode_sb(struct super_block *sb, struct kmem_cache *cache)
{
	return alloc_inode_sb(sb, cache, GFP_KERNEL);
}

/* A mount option's key and value (NULL for a flag); only those two kinds. */
int oxdax_fs_param(const struct fs_parameter *param, const char **key, const char **value)
{
	*key = param->key;
	switch (param->type) {
	case fs_value_is_flag:
		*value = NULL;
		return 0;
	case fs_value_is_string:
		*value = param->string;
		return 0;
	default:
		return -EINVAL;
	}
}

void oxdax_inode_lock(struct inode *inode)
{
	inode_lock(inode);
}

void oxdax_inode_unlock(struct inode *inode)
{
	inode_unlock(inode);
}

void oxdax_inode_lock_shared(struct inode *inode)
{
	inode_lock_shared(inode);
}

void oxdax_inode_unlock_shared(struct inode *inode)
{
	inode_unlock_shared(inode);
}

long long oxdax_i_size_read(const struct inode *inode)
{
	return i_size_read(inode);
}

void oxdax_i_size_write(struct inode *inode, long long size)
{
	i_size_write(inode, size);
}

unsigned int oxdax_i_uid_read(const struct inode *inode)
{
	return i_uid_read(inode);
}

unsigned int oxdax_i_gid_read(const struct inode *inode)
{
	return i_gid_read(inode);
}

void oxdax_i_uid_write(struct inode *inode, unsigned int uid)
{
	i_uid_write(inode, uid);
}

void oxdax_i_gid_write(struct inode *inode, unsigned int gid)
{
	i_gid_write(inode, gid);
}

void oxdax_inode_set_times(struct inode *inode, const struct timespec64 *atime,
			   const struct timespec64 *mtime, const struct timespec64 *ctime)
{
	inode_set_atime_to_ts(inode, *atime);
	inode_set_mtime_to_ts(inode, *mtime);
	inode_set_ctime_to_ts(inode, *ctime);
}

void oxdax_inode_get_times(struct inode *inode, struct timespec64 *atime,
			   struct timespec64 *mtime, struct timespec64 *ctime)
{
	*atime = inode_get_atime(inode);
	*mtime = inode_get_mtime(inode);
	*ctime = inode_get_ctime(inode);
}

const unsigned char *oxdax_dentry_name(const struct dentry *dentry, unsigned int *len)
{
	*len = dentry->d_name.len;
	return dentry->d_name.name;
}

bool oxdax_dir_emit(struct dir_context *ctx, const char *name, int len, u64 ino,
		    unsigned int type)
{
	return dir_emit(ctx, name, len, ino, type);
}

bool oxdax_dir_emit_dots(struct file *file, struct dir_context *ctx)
{
	return dir_emit_dots(file, ctx);
}

/* DAX files take O_DIRECT: every access is direct anyway. */
void oxdax_file_allow_odirect(struct file *file)
{
	file->f_mode |= FMODE_CAN_ODIRECT;
}

/* Whether @file was opened for writing (fmode_t is a sparse bitwise type). */
bool oxdax_file_writable(const struct file *file)
{
	return file->f_mode & FMODE_WRITE;
}

void oxdax_file_accessed(struct file *file)
{
	file_accessed(file);
}

size_t oxdax_iov_iter_count(const struct iov_iter *iter)
{
	return iov_iter_count(iter);
}

/* Orders and drains earlier flushcache stores: pmem_wmb(). */
void oxdax_pmem_wmb(void)
{
	pmem_wmb();
}

/* DEFINE_RATELIMIT_STATE is a macro: one state for the module's messages. */
bool oxdax_ratelimit(void)
{
	static DEFINE_RATELIMIT_STATE(state, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST);

	return __ratelimit(&state);
}

/*
 * The fault engine (rust/dax/) keeps its entries in mapping->i_pages with
 * fs/dax.c's encoding; XA_STATE_ORDER and xa_lock_irq are macros.
 */
void oxdax_xas_init(struct xa_state *xas, struct address_space *mapping,
		    unsigned long index, unsigned int order)
{
	XA_STATE_ORDER(init, &mapping->i_pages, index, order);

	*xas = init;
}

void oxdax_i_pages_lock(struct address_space *mapping)
{
	xa_lock_irq(&mapping->i_pages);
}

void oxdax_i_pages_unlock(struct address_space *mapping)
{
	xa_unlock_irq(&mapping->i_pages);
}

/*
 * struct page's ->mapping, ->index and ->share live in unions: what
 * dax_associate_entry()/dax_disassociate_entry() (static in fs/dax.c) do,
 * so that fs/dax.c's truncate and memory-failure paths find the pages of
 * the engine's entries as they would find their own. Called under the
 * i_pages lock.
 */
void oxdax_dax_associate(unsigned long pfn, unsigned long nr, struct address_space *mapping,
			 unsigned long index, bool shared)
{
	unsigned long i;

	for (i = 0; i < nr; i++) {
		struct page *page = pfn_to_page(pfn + i);

		if (shared || page->mapping) {
			if (page->mapping != PAGE_MAPPING_DAX_SHARED) {
				if (page->mapping)
					page->share = 1;
				page->mapping = PAGE_MAPPING_DAX_SHARED;
			}
			page->share++;
		} else {
			page->mapping = mapping;
			page->index = index + i;
		}
	}
}

void oxdax_dax_disassociate(unsigned long pfn, unsigned long nr, struct address_space *mapping)
{
	unsigned long i;

	for (i = 0; i < nr; i++) {
		struct page *page = pfn_to_page(pfn + i);

		if (page->mapping == PAGE_MAPPING_DAX_SHARED) {
			if (--page->share > 0)
				continue;
		} else if (page->mapping != mapping) {
			continue;
		}
		page->mapping = NULL;
		page->index = 0;
	}
}

u64 oxdax_pfn_t_dev(unsigned long pfn)
{
	return pfn_to_pfn_t(pfn).val | PFN_DEV | PFN_MAP;
}

unsigned long oxdax_zero_pfn(unsigned long address)
{
	return my_zero_pfn(address);
}

unsigned long oxdax_vma_flags(const struct vm_area_struct *vma)
{
	return vma->vm_flags;
}

/*
 * DAX mappings as ext4 and xfs make them: VM_HUGEPAGE only. The pages are
 * devmap pfns (PFN_DEV | PFN_MAP), which vmf_insert_mixed() and
 * vmf_insert_pfn_pmd() take without VM_MIXEDMAP; VM_MIXEDMAP would keep
 * mremap() from growing a mapping in place (vma_merge_extend() refuses
 * special mappings).
 */
void oxdax_vma_set_dax_flags(struct vm_area_struct *vma)
{
	vm_flags_set(vma, VM_HUGEPAGE);
}

void oxdax_sb_start_pagefault(struct super_block *sb)
{
	sb_start_pagefault(sb);
}

void oxdax_sb_end_pagefault(struct super_block *sb)
{
	sb_end_pagefault(sb);
}

void oxdax_invalidate_lock(struct address_space *mapping)
{
	filemap_invalidate_lock(mapping);
}

void oxdax_invalidate_unlock(struct address_space *mapping)
{
	filemap_invalidate_unlock(mapping);
}

void oxdax_invalidate_lock_shared(struct address_space *mapping)
{
	filemap_invalidate_lock_shared(mapping);
}

void oxdax_invalidate_unlock_shared(struct address_space *mapping)
{
	filemap_invalidate_unlock_shared(mapping);
}

/*
 * Waits until nobody but the mapping holds @page (GUP pins for direct I/O,
 * for instance), as xfs_break_dax_layouts() does. The invalidate lock,
 * held exclusively by the caller, is dropped while sleeping: the pin
 * holder may need to fault (shared) on this file before it lets go.
 * fsdax pages are free at refcount 1 and put_page() wakes this variable.
 */
int oxdax_wait_page_idle(struct page *page, struct address_space *mapping)
{
	return ___wait_var_event(&page->_refcount, atomic_read(&page->_refcount) == 1,
				 TASK_INTERRUPTIBLE, 0, 0,
				 filemap_invalidate_unlock(mapping);
				 schedule();
				 filemap_invalidate_lock(mapping));
}

/* The same with no lock held (the caller dropped all of them). */
int oxdax_wait_page_unpinned(struct page *page)
{
	return ___wait_var_event(&page->_refcount, atomic_read(&page->_refcount) == 1,
				 TASK_INTERRUPTIBLE, 0, 0, schedule());
}


/*
 * Makes the PTE just inserted for @pfn at the fault address writable and
 * dirty, as vmf_insert_mixed_mkwrite() (not exported) does with
 * ptep_set_access_flags(): a write fault then costs one fault, not two
 * (insert read-only, then pfn_mkwrite). Only an upgrade of the same pfn:
 * no TLB flush is needed (x86 handles the spurious fault of a stale
 * read-only entry). The caller holds the mmap or VMA lock.
 */
struct oxdax_mkwrite {
	struct vm_area_struct *vma;
	unsigned long pfn;
	bool done;
};

static int oxdax_mkwrite_pte(pte_t *ptep, unsigned long addr, void *data)
{
	struct oxdax_mkwrite *m = data;
	pte_t pte = ptep_get(ptep);

	if (!pte_present(pte) || pte_pfn(pte) != m->pfn)
		return 0;
	if (!(m->vma->vm_flags & VM_WRITE))
		return 0;
	/* pte_mkwrite() is out of line on x86 (shadow stacks); DAX VMAs never are one. */
	pte = pte_mkdirty(pte_mkwrite_novma(pte_mkyoung(pte)));
	set_pte(ptep, pte);
	update_mmu_cache(m->vma, addr, ptep);
	m->done = true;
	return 0;
}

bool oxdax_pte_mkwrite(struct vm_fault *vmf, unsigned long pfn)
{
	struct oxdax_mkwrite m = { .vma = vmf->vma, .pfn = pfn, .done = false };

	apply_to_existing_page_range(vmf->vma->vm_mm, vmf->address & PAGE_MASK, PAGE_SIZE,
				     oxdax_mkwrite_pte, &m);
	return m.done;
}

/*
 * Whether the PUD at the fault address is a huge one of @pfn (inserted
 * read-only by vmf_insert_pfn_pud()). With @removals (a write) it is made
 * writable and dirty, as insert_pfn_pud() does for a write, if the
 * counter still reads @seen: a removal of mappings since then may have
 * cleaned the entries, and this PUD may be another fault's that looks the
 * same; the access then faults again. A page table there (a racing fault
 * fell back) or nothing is left alone; vmf_insert_pfn_pud() itself would
 * WARN on a table for a write. No TLB flush, as for oxdax_pte_mkwrite().
 * The caller holds the mmap or VMA lock of a PUD fault (vmf->pud is set).
 */
bool oxdax_pud_settle(struct vm_fault *vmf, unsigned long pfn, const u64 *removals, u64 seen)
{
#ifdef CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD
	struct vm_area_struct *vma = vmf->vma;
	unsigned long addr = vmf->address & PUD_MASK;
	bool ours;
	spinlock_t *ptl;
	pud_t pud;

	if (removals && !(vma->vm_flags & VM_WRITE))
		return false;
	ptl = pud_lock(vma->vm_mm, vmf->pud);
	pud = *vmf->pud;
	ours = pud_devmap(pud) && pud_pfn(pud) == pfn;
	if (ours && removals) {
		if (READ_ONCE(*removals) == seen) {
			pud = pud_mkyoung(pud_mkdirty(pud_mkwrite(pud)));
			set_pud_at(vma->vm_mm, addr, vmf->pud, pud);
			update_mmu_cache_pud(vma, addr, vmf->pud);
		} else {
			ours = false;
		}
	}
	spin_unlock(ptl);
	return ours;
#else
	return false;
#endif
}

/* The mm of the task in whose context we run (get_unmapped_area). */
struct mm_struct *oxdax_current_mm(void)
{
	return current->mm;
}

/* i_blocks from a path that does not hold i_rwsem (a page fault). */
void oxdax_inode_set_bytes_locked(struct inode *inode, long long bytes)
{
	spin_lock(&inode->i_lock);
	inode_set_bytes(inode, bytes);
	spin_unlock(&inode->i_lock);
}

/*
 * An active reference on @sb if it is mounted and not being unmounted
 * (SB_BORN is set once the mount finished; s_active reaches zero when the
 * unmount starts). Dropped with deactivate_super().
 */
bool oxdax_sb_get_active(struct super_block *sb)
{
	if (!(READ_ONCE(sb->s_flags) & SB_BORN))
		return false;
	smp_rmb(); /* pairs with vfs_get_tree()'s smp_wmb() before SB_BORN */
	return atomic_inc_not_zero(&sb->s_active);
}

/*
 * Calls @visit with every inode of @sb that has DAX entries, holding a
 * reference on it and no lock (drop_pagecache_sb()'s walk: the list lock
 * is dropped around each call; the previous inode's reference is dropped
 * after the next one is taken, so the walk's position stays valid).
 */
void oxdax_sb_for_each_mapped_inode(struct super_block *sb,
				    void (*visit)(struct inode *, void *), void *data)
{
	struct inode *inode, *previous = NULL;

	spin_lock(&sb->s_inode_list_lock);
	list_for_each_entry(inode, &sb->s_inodes, i_sb_list) {
		spin_lock(&inode->i_lock);
		if ((inode->i_state & (I_FREEING | I_WILL_FREE | I_NEW)) ||
		    !READ_ONCE(inode->i_mapping->nrpages)) {
			spin_unlock(&inode->i_lock);
			continue;
		}
		atomic_inc(&inode->i_count); /* __iget(), not exported */
		spin_unlock(&inode->i_lock);
		spin_unlock(&sb->s_inode_list_lock);
		visit(inode, data);
		iput(previous);
		previous = inode;
		cond_resched();
		spin_lock(&sb->s_inode_list_lock);
	}
	spin_unlock(&sb->s_inode_list_lock);
	iput(previous);
}
