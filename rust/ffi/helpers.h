/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers: only what Rust cannot express (static inline functions, macros).
 * Declared here for bindgen; defined in helpers.c.
 */
#ifndef OXDAX_HELPERS_H
#define OXDAX_HELPERS_H

/*
 * Module parameters are registered with module_param_cb() (a macro) in
 * helpers.c; their values are parsed and kept in Rust (rust/params.rs), which
 * defines these functions.
 */
int oxdax_param_fault_engine_set(const char *val);
const char *oxdax_param_fault_engine_name(void);

struct bio;
struct bio_vec;
struct bvec_iter;
struct device;
struct attribute_group;
struct dax_device;
struct gendisk;
struct kernfs_node;
struct nd_device_driver;
struct nd_namespace_common;
struct nd_namespace_io;
struct queue_limits;
struct resource;

/* libnvdimm */
int oxdax_nd_driver_register(struct nd_device_driver *drv);
void oxdax_nd_driver_unregister(struct nd_device_driver *drv);
struct nd_namespace_io *oxdax_to_nd_namespace_io(struct nd_namespace_common *ndns);
void *oxdax_dev_get_drvdata(const struct device *dev);
void oxdax_dev_set_drvdata(struct device *dev, void *data);
const char *oxdax_dev_name(const struct device *dev);
struct resource *oxdax_request_mem_region(resource_size_t start, resource_size_t n,
					  const char *name);
void oxdax_release_mem_region(resource_size_t start, resource_size_t n);

/* block */
struct gendisk *oxdax_blk_alloc_disk(struct queue_limits *lim, int node);
bool oxdax_bio_next_segment(struct bio *bio, struct bvec_iter *iter,
			    struct bio_vec *bv, sector_t *sector);
unsigned int oxdax_bio_op(const struct bio *bio);
unsigned long oxdax_bio_start_io_acct(struct bio *bio);
void oxdax_bio_end_io_acct(struct bio *bio, unsigned long start);

/* pmem disk attributes (sysfs) */
extern const struct attribute_group *oxdax_pmem_attribute_groups[];
/*
 * A bio-based disk's operations as the Rust side lays them out
 * (rust/sys/block.rs, DiskOps, #[repr(C)]): the block device operations,
 * then how to find the disk's DAX device from its private data.
 */
struct oxdax_disk_ops {
	struct block_device_operations table;
	struct dax_device *(*dax_of)(void *private_data);
};
struct kernfs_node *oxdax_disk_badblocks_dirent(struct gendisk *disk);

/* memory */
void oxdax_memcpy_flushcache(void *dst, const void *src, size_t n);
u64 oxdax_phys_to_pfn_t(phys_addr_t addr, u64 flags);
void oxdax_cond_resched(void);
void oxdax_pmem_mkpage_present(unsigned long pfn, unsigned long nr_pages);
bool oxdax_any_page_hwpoisoned(unsigned long pfn, unsigned long nr_pages);

/* filesystem */
struct dir_context;
struct file;
struct fs_parameter;
struct inode;
struct kmem_cache;
struct super_block;
struct dentry;
struct timespec64;
struct iov_iter;
struct kmem_cache *oxdax_kmem_cache_create(const char *name, unsigned int size,
					   void (*ctor)(void *));
void *oxdax_alloc_inode_sb(struct super_block *sb, struct kmem_cache *cache);
int oxdax_fs_param(const struct fs_parameter *param, const char **key, const char **value);
void oxdax_inode_lock(struct inode *inode);
void oxdax_inode_unlock(struct inode *inode);
void oxdax_inode_lock_shared(struct inode *inode);
void oxdax_inode_unlock_shared(struct inode *inode);
long long oxdax_i_size_read(const struct inode *inode);
void oxdax_i_size_write(struct inode *inode, long long size);
unsigned int oxdax_i_uid_read(const struct inode *inode);
unsigned int oxdax_i_gid_read(const struct inode *inode);
void oxdax_i_uid_write(struct inode *inode, unsigned int uid);
void oxdax_i_gid_write(struct inode *inode, unsigned int gid);
void oxdax_inode_set_times(struct inode *inode, const struct timespec64 *atime,
			   const struct timespec64 *mtime, const struct timespec64 *ctime);
void oxdax_inode_get_times(struct inode *inode, struct timespec64 *atime,
			   struct timespec64 *mtime, struct timespec64 *ctime);
const unsigned char *oxdax_dentry_name(const struct dentry *dentry, unsigned int *len);
bool oxdax_dir_emit(struct dir_context *ctx, const char *name, int len, u64 ino,
		    unsigned int type);
bool oxdax_dir_emit_dots(struct file *file, struct dir_context *ctx);
void oxdax_file_allow_odirect(struct file *file);
bool oxdax_file_writable(const struct file *file);
void oxdax_file_accessed(struct file *file);
size_t oxdax_iov_iter_count(const struct iov_iter *iter);
void oxdax_pmem_wmb(void);
bool oxdax_ratelimit(void);

bool oxdax_sb_get_active(struct super_block *sb);
bool oxdax_sb_start_write_trylock(struct super_block *sb);
void oxdax_sb_end_write(struct super_block *sb);
void oxdax_sb_for_each_mapped_inode(struct super_block *sb,
				    void (*visit)(struct inode *, void *), void *data);


/* mappings and page faults (the fault engine) */
struct address_space;
struct page;
struct vm_area_struct;
struct vm_fault;
struct xa_state;
void oxdax_xas_init(struct xa_state *xas, struct address_space *mapping,
		    unsigned long index, unsigned int order);
void oxdax_i_pages_lock(struct address_space *mapping);
void oxdax_i_pages_unlock(struct address_space *mapping);
void oxdax_dax_associate(unsigned long pfn, unsigned long nr, struct address_space *mapping,
			 unsigned long index, bool shared);
void oxdax_dax_disassociate(unsigned long pfn, unsigned long nr,
			    struct address_space *mapping);
u64 oxdax_pfn_t_dev(unsigned long pfn);
unsigned long oxdax_zero_pfn(unsigned long address);
unsigned long oxdax_vma_flags(const struct vm_area_struct *vma);
void oxdax_vma_set_dax_flags(struct vm_area_struct *vma);
void oxdax_sb_start_pagefault(struct super_block *sb);
void oxdax_sb_end_pagefault(struct super_block *sb);
void oxdax_invalidate_lock(struct address_space *mapping);
void oxdax_invalidate_unlock(struct address_space *mapping);
void oxdax_invalidate_lock_shared(struct address_space *mapping);
void oxdax_invalidate_unlock_shared(struct address_space *mapping);
int oxdax_wait_page_idle(struct page *page, struct address_space *mapping);
int oxdax_wait_page_unpinned(struct page *page);
bool oxdax_pte_mkwrite(struct vm_fault *vmf, unsigned long pfn);
bool oxdax_pud_settle(struct vm_fault *vmf, unsigned long pfn, const u64 *removals, u64 seen);
struct mm_struct *oxdax_current_mm(void);
void oxdax_inode_set_bytes_locked(struct inode *inode, long long bytes);

#endif /* OXDAX_HELPERS_H */
